"""The training loop: one readable function, accelerate underneath, callbacks for progress, logs and validation.

The method is the paper's: a trainable copy of the U-Net encoder (`ControlNetModel.from_unet`), joined to the locked
base by zero convolutions, trained with the base's own noise-prediction loss while half the prompts are empty.
Every random draw (data order, noise, timesteps, empty prompts) comes from generators seeded by the config and
saved in checkpoints, so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bad_rows import RowLedger, bad_rows_file
from .base import load_base
from .checkpoint import CheckpointError, describe_write_error, find_resume, is_disk_full, write_atomically
from .config import TrainConfig
from .data import ControlNetDataset, DataError, collate, load_rows
from .finite import TrainingDiverged, divergence_message, first_nonfinite, nonfinite_tensors
from .objectives import encode_text, objective_for
from .sources import data_source
from .stop import StopRequest
from .weights import weights_sha256

Callback = Callable[[str, dict[str, Any]], None]


@dataclass
class Run:
    """Everything the loop needs, made once by `setup`: the accelerator, data, models, optimizer and the generator
    every random draw comes from, and the counters a checkpoint saves."""

    config: TrainConfig
    accelerator: Any
    emit: Callback
    stop: StopRequest
    loaded: Any  # LoadedRows: the checked training rows
    loader: Any
    validation_rows: list[Any]
    # family, tokenizer(s), text encoder(s), vae, the denoiser (unet or transformer), noise_scheduler (locked unless
    # unlocked); a DiT's pipeline (its encode_prompt)
    base: dict[str, Any]
    controlnet: Any  # wrapped by accelerate
    optimizer: Any
    rng: Any  # torch.Generator: data-independent draws (noise, timesteps, empty prompts), saved per process
    weight_dtype: Any
    source: Any = None  # train/sources.py DataSource: where each step's latents and text embeddings come from
    ema: Any = None  # diffusers' EMAModel of the ControlNet's trainable weights (ema_decay > 0)
    step: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {"empty_prompts": 0, "prompts": 0})
    unlocked: bool = False  # large mode: the base's denoiser trains too
    writer: Any = None  # TensorBoard

    @property
    def out(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def streaming(self) -> bool:
        """Steps read a stream (with a latent cache, the stream only fed the cache: steps read the cache)."""
        return self.config.streaming and not self.config.latent_cache

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def denoiser(self) -> Any:
        """The base's denoising model: the U-Net, or a DiT's transformer."""
        return self.base[self.base["family"].denoiser]

    def any_process(self, local: bool) -> bool:
        """True on every process when `local` is True on any: every process takes the same branch (a stop, a failed
        write), or the collectives that follow would hang."""
        import torch

        if self.accelerator.num_processes == 1:
            return local
        flag = torch.tensor([float(local)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)


def train(config: TrainConfig, callback: Callback | None = None) -> Path | None:
    """Train a ControlNet as `config` says; return the folder of the final ControlNet (None if stopped early)."""
    config = config.validated()
    if config.push_to_hub:  # offline, refused now rather than after the run: train without it, push it later
        from .hub import check_hub_reachable, hub_user

        later = f"python -m train push --run {config.output_dir}" + (
            f" --repo-id {config.hub_model_id}" if config.hub_model_id else "")
        check_hub_reachable("--push-to-hub", f"train without it, then {later}")
        hub_user()  # and a token that works, now rather than after hours of training
    # A stop request (SIGTERM/SIGINT, or the STOP file the Train tab writes) is honoured whenever it arrives, also
    # while the run is still loading: so it is listened for first, and a STOP file already there counts.
    stop = StopRequest(Path(config.output_dir) / "STOP")
    try:
        run = setup(config, stop, callback)
        if run is None:  # stopped while loading
            return None
        return finish(run, loop(run))
    finally:
        stop.release()


def loop(run: Run) -> bool:
    """Micro-batches accumulate into optimizer steps until max_steps or a stop; True when stopped early. The data
    order depends only on the seed and the epoch, so a resumed run sees the batches an uninterrupted one would."""
    config, accelerator = run.config, run.accelerator
    micro = run.step * config.grad_accum
    # accelerate counts micro-batches to know the accumulation boundaries: a resumed run continues the count.
    accelerator.step = micro
    started, run_steps, window = time.monotonic(), 0, []
    if run.step < config.max_steps:
        for batch in _together(run, _batches(run, micro)):
            if config.mode == "large" and not run.unlocked and run.step >= config.unlock_after:
                run.unlocked = _unlock(run.denoiser, run.optimizer, config)
                run.emit("unlock", {"step": run.step})
            # accelerate's gradient accumulation: no all-reduce until the boundary, the loss divided by grad_accum.
            with accelerator.accumulate(run.controlnet), accelerator.autocast():
                loss = _loss(run, batch)
                accelerator.backward(loss)
            window.append(loss.detach().float().item())
            micro += 1
            if not accelerator.sync_gradients:
                continue
            _optimizer_step(run, window)
            run_steps += 1
            mean_loss = sum(window) / len(window)
            window.clear()
            _write_progress(run, mean_loss, seconds_per_step=(time.monotonic() - started) / run_steps)
            run.emit("step", {"step": run.step, "loss": mean_loss, "max_steps": config.max_steps})
            if run.step % config.log_every == 0 or run.step == config.max_steps:
                _log(run, mean_loss, seconds_per_step=(time.monotonic() - started) / run_steps)
            if config.validate_every and run.step % config.validate_every == 0:
                _validate(run)
            want_stop = run.any_process(run.stop() or (config.stop_after is not None
                                                       and run_steps >= config.stop_after))
            if run.step % config.checkpoint_every == 0 or want_stop or run.step == config.max_steps:
                save_checkpoint(run)
            if want_stop and run.step < config.max_steps:
                return True
            if run.step >= config.max_steps:
                break
    return False


def _batches(run: Run, micro: int) -> Any:
    """Micro-batches from micro-batch number `micro` on, without end. A stream carries its own position (restored by
    `_resume`); a map-style dataset is reshuffled per epoch by a seeded sampler and the epoch's first batches are
    skipped, so a resumed run sees the batches an uninterrupted one would."""
    if run.streaming:
        yield from run.loader  # endless: each process's share starts its next epoch by itself
        return
    epoch, skip = divmod(micro, len(run.loader))
    while True:
        run.loader.set_epoch(epoch)
        yield from run.accelerator.skip_first_batches(run.loader, skip) if skip else run.loader
        skip, epoch = 0, epoch + 1


def _together(run: Run, batches: Any) -> Any:
    """The batches, a data error met by any process raised on every process at the same micro-batch: a rank that
    stopped alone (a bad row in strict mode, the bad-row limit of its share) left the others waiting at the next
    collective until the launcher's timeout. With several processes this costs one all-reduce of a flag a batch."""
    while True:
        try:
            batch, failure = next(batches), None
        except DataError as err:
            batch, failure = None, DataError(_own_message(err))
        if run.any_process(failure is not None):
            raise failure or DataError(f"another process stopped on its data at step {run.step} (its error is "
                                       "above); this one stopped with it")
        yield batch


def _own_message(err: Exception) -> str:
    """The error's own message: from a loader worker, torch wraps it as "Caught DataError in DataLoader worker
    process 0. Original Traceback ... cnet.datasets.DataError: <message>"; the user needs the last part only."""
    text = str(err)
    return text.strip().splitlines()[-1].split(": ", 1)[-1] if "Original Traceback" in text else text


def setup(config: TrainConfig, stop: StopRequest, callback: Callback | None = None) -> Run | None:
    """Accelerate, data, models, optimizer, resume: a `Run`, or None when a stop arrived while loading."""
    import torch
    from accelerate.utils import set_seed

    out = Path(config.output_dir)
    # 1. Accelerate: one process or many (accelerate launch); only the main process writes files and logs.
    accelerator = _accelerator(config)
    emit: Callback = (callback or _ignore) if accelerator.is_main_process else _ignore
    if accelerator.is_main_process:  # first: the Train tab reads the run's settings, even of a run stopped early
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    set_seed(config.seed)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision, torch.float32)
    # 2. Data, checked row by row before anything heavy is loaded; a latent cache still to be made is made first,
    # by the models this run loads anyway.
    models = None
    if config.latent_cache and not (Path(config.latent_cache) / "manifest.json").is_file() and config.dataset:
        models = _models(config, accelerator.device, weight_dtype)
        if not _build_latent_cache(config, accelerator, models[0], emit, stop):
            return _stopped_while_loading(Run(config, accelerator, emit, stop, None, None, [], base={},
                                              controlnet=None, optimizer=None, rng=None, weight_dtype=weight_dtype))
    loaded, dataset, loader, validation_rows = _data(config, accelerator)
    run = Run(config, accelerator, emit, stop, loaded, loader, validation_rows, base={}, controlnet=None,
              optimizer=None, rng=None, weight_dtype=weight_dtype)
    if run.any_process(stop()):
        return _stopped_while_loading(run)
    # 3. Models: the locked base and the trainable copy; 4. the data source; 5. the optimizer.
    run.base, controlnet = models or _models(config, accelerator.device, weight_dtype)
    run.source = _source(run, dataset)
    optimizer = _optimizer([p for p in controlnet.parameters() if p.requires_grad], config)
    optimizer.param_groups[0]["base_lr"] = config.lr  # the LR schedule is a function of the step: see _apply_lr
    if run.streaming:  # each process reads its own shards: accelerate must not split or dispatch the batches
        run.controlnet, run.optimizer = accelerator.prepare(controlnet, optimizer)
    else:
        run.controlnet, run.optimizer, run.loader = accelerator.prepare(controlnet, optimizer, loader)
    run.rng = torch.Generator().manual_seed(config.seed * 1_000_003 + accelerator.process_index)
    if config.ema_decay:
        from diffusers.training_utils import EMAModel

        run.ema = EMAModel([p for p in controlnet.parameters() if p.requires_grad], decay=config.ema_decay)
    # 6. Resume: weights, optimizer, LR schedule, every process's generator, counters.
    if config.resume:
        _resume(run)
    if run.any_process(stop()):  # asked while the models loaded: nothing new to save
        return _stopped_while_loading(run)
    run.writer = _tensorboard(out) if run.main else None
    # Live references for in-process callers (tests, notebooks) that want to inspect or hook the models.
    emit("setup", {run.base["family"].denoiser: run.denoiser, "controlnet": accelerator.unwrap_model(run.controlnet),
                   "vae": run.base["vae"]})
    emit("start", {"max_steps": config.max_steps, "rows": None if run.streaming else len(dataset),
                   "skipped": loaded.skipped,
                   "layout": loaded.layout, "step": run.step, "processes": accelerator.num_processes})
    return run


def _accelerator(config: TrainConfig) -> Any:
    """accelerate's Accelerator for the run. Accumulation runs across epoch ends (sync_with_dataloader off), so a
    step's micro-batches do not depend on where an epoch happens to end, and a resumed run accumulates exactly as an
    uninterrupted one; the sampler is seeded by the config."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin

    return Accelerator(mixed_precision=config.mixed_precision,
                       gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=config.grad_accum,
                                                                               sync_with_dataloader=False),
                       dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
                       kwargs_handlers=_ddp_options(config))


def _ddp_options(config: TrainConfig) -> list[Any]:
    """Several processes: a DiT ControlNet copy holds weights that no output reads (the last double block's text
    branch), which DDP must be told to expect (train/objectives.py `unused_parameters`). The family is read from the
    base's config, before any weight."""
    from accelerate.utils import DistributedDataParallelKwargs

    from cnet.families import base_family

    if not objective_for(base_family(config.base_model, config.single_file_config)).unused_parameters:
        return []
    return [DistributedDataParallelKwargs(find_unused_parameters=True)]


def _source(run: Run, dataset: Any) -> Any:
    """Where the steps' latents and text embeddings come from (train/sources.py): a latent cache made by these very
    encoders at this resolution (or refused), a RAM precompute, or the encoders in each step."""
    config = run.config
    if config.latent_cache:
        from .latent_cache import cache_key, check_key

        check_key(Path(config.latent_cache), cache_key(run.base, config.resolution), config.dataset or None)
    cache = None
    if config.precompute:  # the VAE encoder and text encoder leave the training step
        cache = _precompute(dataset, run.base, run.accelerator.device, run.weight_dtype, config)
        dataset.with_pixels = False  # from here the steps read the cache: no image decoded or moved per step
    return data_source(run.base, run.accelerator.device, run.weight_dtype, cache=cache,
                       empty_prompt=dataset.empty if config.latent_cache else None)


def finish(run: Run, stopped: bool) -> Path | None:
    """The result: a diffusers ControlNet folder with a model card (and the base U-Net in large mode); or, when
    stopped, nothing new (the last checkpoint has it all)."""
    result = None
    controlnet = run.accelerator.unwrap_model(run.controlnet)
    _refuse_nonfinite_weights(run)  # the result (the EMA's weights, when kept) is finite, or not saved
    # All processes must hold the same weights (DDP keeps them so): checked, and the hash reported with the result.
    hashes = run.accelerator.gather_for_metrics([weights_sha256(controlnet)], use_gather_object=True)
    if len(set(hashes)) > 1:
        run.emit("warning", {"message": f"the processes ended with different weights: {hashes}"})
    if not stopped and run.main:
        if run.ema is not None:  # the result is the averaged weights (the last ones stay in the checkpoints)
            run.ema.copy_to([p for p in controlnet.parameters() if p.requires_grad])
        stats = dict(run.stats)
        if not run.streaming and run.loaded is not None and run.loaded.rows:  # refused when read + found bad later
            stats["rows_skipped"] = _rows_seen(run)["rows_skipped"]
        result = _save_final(controlnet, _trained_base(run) if run.unlocked else None, run.config, run.loaded,
                             stats, run.step)
        run.emit("end", {"path": str(result), "step": run.step, "weights_sha256": hashes})
    elif stopped:
        run.emit("stopped", {"step": run.step})
        if run.main:
            run.stop.consume()  # honoured: the next run of this folder must not stop at once
    if run.writer:
        run.writer.close()
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    if result is not None and run.config.push_to_hub:  # after the barrier: no process waits on an upload
        _push(run)
    return result


def _push(run: Run) -> None:
    """The result to the Hub; a failure (the network gone since the start, a token without write access) is a
    warning: the result stays on disk, and the message says how to push it later."""
    from .hub import push_run

    config = run.config
    try:
        run.emit("pushed", {"url": push_run(run.out, config.hub_model_id, private=config.hub_private)})
    except ValueError as err:  # push_run's: what failed, and the command that pushes later
        run.emit("warning", {"message": str(err)})


def _ignore(event: str, info: dict[str, Any]) -> None:
    """The callback of processes other than the main one: only the main process reports."""


def _stopped_while_loading(run: Run) -> None:
    run.emit("stopped", {"step": run.step, "before_training": True})
    if run.main:
        run.stop.consume()
    run.accelerator.wait_for_everyone()
    run.accelerator.end_training()
    return None


def _columns(config: TrainConfig) -> dict[str, str]:
    return dict(image_column=config.image_column, conditioning_image_column=config.conditioning_image_column,
                caption_column=config.caption_column)


def _validation_rows(config: TrainConfig, first_rows: Callable[[int], list[Any]]) -> list[Any]:
    """The rows validation generates from, the same rule for every data source: the held-out set's
    (`validation_dataset`) when given, else the first `num_validation` of the data's own (`first_rows(n)`)."""
    if not config.num_validation:
        return []
    if config.validation_dataset:
        return load_rows(config.validation_dataset, **_columns(config)).rows[: config.num_validation]
    return first_rows(config.num_validation)


def _data(config: TrainConfig, accelerator: Any) -> tuple[Any, Any, Any, list[Any]]:
    """The checked rows, their Dataset and DataLoader, and the validation rows (held-out ones when given)."""
    import torch

    if config.latent_cache:
        return _cache_data(config)
    if config.streaming:
        return _stream_data(config, accelerator, _columns(config))
    # The rows' files are checked as they are loaded (the ledger), not all before the first step.
    loaded = load_rows(config.dataset, skip_bad_rows=config.skip_bad_rows, check_files=False, **_columns(config))
    log_file = bad_rows_file(Path(config.output_dir), accelerator.process_index)
    ledger = RowLedger(config.dataset, len(loaded.rows), skip=config.skip_bad_rows, limit=config.bad_row_limit,
                       log_file=log_file)
    dataset = ControlNetDataset(loaded.rows, config.resolution, ledger=ledger)
    validation_rows = _validation_rows(config, lambda n: _first_usable(loaded.rows, n, config.resolution))
    # Persistent workers keep their copy of the ledger across epochs: a bad row is found (and logged) once each.
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True, collate_fn=collate,
                                         num_workers=config.num_workers, drop_last=len(dataset) >= config.batch_size,
                                         persistent_workers=config.num_workers > 0)
    return loaded, dataset, loader, validation_rows


def _first_usable(rows: list[Any], n: int, resolution: int) -> list[Any]:
    """The first `n` rows whose images load (a bad one is the training ledger's to name, when the run reaches it)."""
    probe = ControlNetDataset(rows, resolution, ledger=RowLedger("the dataset", len(rows), skip=True, limit=1.0))
    used = []
    for i in range(len(rows)):
        index = probe[i]["index"]
        if index not in used:
            used.append(index)
        if len(used) == n or index < i:  # n found, or the search wrapped round to the start
            break
    return [rows[i] for i in used]


def _stream_data(config: TrainConfig, accelerator: Any, columns: dict[str, str]) -> tuple[Any, Any, Any, list[Any]]:
    """This process's share of the stream, its loader (no workers: the position saved is then exact), and the
    validation rows: the held-out set's, or the first good rows of the stream."""
    import torch

    from .data import LoadedRows, Row
    from .stream import StreamingRows, stream_collate

    rank = accelerator.process_index
    out = Path(config.output_dir)
    dataset = StreamingRows(config.dataset, config.resolution, columns=tuple(columns.values()), seed=config.seed,
                            shuffle_block=config.shuffle_block, share=(rank, accelerator.num_processes),
                            bad_row_limit=config.bad_row_limit,
                            bad_rows_file=bad_rows_file(out, rank))
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, collate_fn=stream_collate)
    def first_rows(n: int) -> list[Any]:  # the first good rows of the stream, read apart from the training share
        probe = StreamingRows(config.dataset, config.resolution, columns=tuple(columns.values()), seed=config.seed,
                              shuffle_block=1)
        return [Row(i, _to_picture(item["pixel_values"] * 0.5 + 0.5), _to_picture(item["conditioning_pixel_values"]),
                    item["text"]) for i, item in zip(range(n), probe)]

    return LoadedRows([], [], "stream"), dataset, loader, _validation_rows(config, first_rows)


def _cache_data(config: TrainConfig) -> tuple[Any, Any, Any, list[Any]]:
    """A latent cache's rows (memory-mapped), their loader, and validation conditions from the cache itself."""
    import torch

    from .data import LoadedRows, Row
    from .latent_cache import LatentCacheDataset, cache_collate

    dataset = LatentCacheDataset(config.latent_cache)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                                         collate_fn=cache_collate, num_workers=config.num_workers,
                                         drop_last=len(dataset) >= config.batch_size)
    def first_rows(n: int) -> list[Any]:  # the cache keeps conditions and texts, not the photos
        return [Row(i, None, _to_picture(item["conditioning_pixel_values"]), item["text"])
                for i, item in ((i, dataset[i]) for i in range(min(n, len(dataset))))]

    return (LoadedRows([], dataset.manifest.get("skipped", []), "latent cache"), dataset, loader,
            _validation_rows(config, first_rows))


def _build_latent_cache(config: TrainConfig, accelerator: Any, base: dict[str, Any], emit: Callback,
                        stop: StopRequest) -> bool:
    """`python -m train cache` inside the run, with its progress in progress.json (the Train tab's bar); False
    when a stop arrived first (the shards written so far are kept for the next start)."""
    from .latent_cache import build_cache

    out = Path(config.output_dir)

    def report(info: dict[str, Any]) -> None:
        emit("cache", info)
        if accelerator.is_main_process:
            _write_json(out / "progress.json", {"phase": "caching", "step": 0, "max_steps": config.max_steps,
                                                "cache_done": info["done"], "cache_of": info["of"]})

    made = build_cache(config.dataset, config.base_model, config.latent_cache, resolution=config.resolution,
                       batch_size=config.batch_size, single_file_config=config.single_file_config,
                       image_column=config.image_column, conditioning_image_column=config.conditioning_image_column,
                       caption_column=config.caption_column, skip_bad_rows=config.skip_bad_rows,
                       streaming=config.streaming, bad_row_limit=config.bad_row_limit, progress=report,
                       should_stop=stop, accelerator=accelerator, base=base)
    return made is not None


def _to_picture(values: Any) -> Any:
    import numpy as np
    from PIL import Image

    return Image.fromarray((values.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))


def _models(config: TrainConfig, device: Any, weight_dtype: Any) -> tuple[dict[str, Any], Any]:
    """The locked base on the device, and the trainable copy (or an existing ControlNet, for transfer learning), as
    the base's family trains (train/objectives.py)."""
    import torch

    base = load_base(config.base_model, weight_dtype, config.single_file_config)
    family, vae = base["family"], base["vae"]
    objective = objective_for(family)
    if config.mode not in objective.modes:
        raise ValueError(f"mode={config.mode!r} does not apply to {family.label}: choose one of "
                         f"{list(objective.modes)} (a transformer has no middle block to connect alone)")
    denoiser = base[family.denoiser]
    if config.init_controlnet:
        controlnet = _load_controlnet(config.init_controlnet, base)
    else:  # the copy, its zero layers at zero
        controlnet = objective.make_controlnet(base)
    encoders = [base[n] for n in ("text_encoder", "text_encoder_2", "text_encoder_3") if n in base]
    for module in (vae, *encoders, denoiser):
        module.requires_grad_(False).eval()
    denoiser.to(device, dtype=torch.float32 if config.mode == "large" else weight_dtype)
    vae.to(device)
    for encoder in encoders:
        encoder.to(device)
    controlnet.train()
    if config.controlnet_lora_rank:  # light training: LoRA on the copy's attention, its zero layers whole
        from .light import add_lora

        add_lora(controlnet, config.controlnet_lora_rank, frozen_dtype=weight_dtype)
    if config.mode == "small":  # only the middle block is connected: the 12 skip zero-convs take no part
        objective.connect_middle_only(controlnet)
    if config.gradient_checkpointing:
        controlnet.enable_gradient_checkpointing()
        denoiser.enable_gradient_checkpointing()
    return base, controlnet


def _load_controlnet(spec: Any, base: dict[str, Any]) -> Any:
    """An existing ControlNet (transfer learning), of the class its config names (a U-Net's, FLUX.1's, SD3's),
    refused by name when it was made for another family than the base."""
    import diffusers

    from cnet.families import check_fits
    from common.models import load_with_hub_fallback, parse_model_source

    source = parse_model_source(spec, what="init_controlnet")
    config = load_with_hub_fallback(diffusers.ControlNetModel.load_config, source)
    denoiser = base[base["family"].denoiser]
    check_fits(config, denoiser.config, source.spec, "the base model")
    cls = getattr(diffusers, config.get("_class_name", "ControlNetModel"), diffusers.ControlNetModel)
    return load_with_hub_fallback(cls.from_pretrained, source)


def _resume(run: Run) -> None:
    """Weights, optimizer, LR schedule, every process's generator and the counters from the checkpoint."""
    import torch

    if run.config.resume == "auto":  # a (re)queued cluster job: go on where the last one stopped, or start
        from .checkpoint import complete_checkpoints

        if not complete_checkpoints(run.out):
            return
    resume = "latest" if run.config.resume == "auto" else run.config.resume
    folder = find_resume(run.out, resume, warn=lambda message: run.emit("warning", {"message": message}))
    state = json.loads((folder / "trainer_state.json").read_text())
    run.step, run.stats = state["step"], state["stats"]
    controlnet = run.accelerator.unwrap_model(run.controlnet)
    if run.config.controlnet_lora_rank:
        from .light import load_trained

        load_trained(controlnet, folder / "controlnet")
    else:
        controlnet.load_state_dict(type(controlnet).from_pretrained(folder / "controlnet").state_dict())
    if run.config.mode == "large" and run.step >= run.config.unlock_after:
        run.unlocked = _unlock(run.denoiser, run.optimizer, run.config)
        run.denoiser.load_state_dict(type(run.denoiser).from_pretrained(
            folder / run.base["family"].denoiser).state_dict())
    # Read on the CPU: load_state_dict moves each state to its parameter's device (a CPU process's device can be
    # "cpu:0", which torch.load cannot map to).
    run.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu"))
    run.rng.set_state(torch.load(folder / "rng.pt")[run.accelerator.process_index])
    if run.ema is not None:
        if not (folder / "ema.pt").is_file():
            raise CheckpointError(f"checkpoint {folder} holds no EMA weights (the run had ema_decay=0): resume it "
                                  "with --ema-decay 0")
        run.ema.load_state_dict(torch.load(folder / "ema.pt", map_location="cpu", weights_only=False))
        run.ema.to(run.accelerator.device)  # read on the CPU; the averaging runs beside the weights
    if run.streaming:
        _resume_stream(run, folder)
    run.emit("resume", {"step": run.step, "checkpoint": str(folder)})


def _resume_stream(run: Run, folder: Path) -> None:
    """Each process's stream position from the checkpoint; the same number of processes must read the shards."""
    import torch

    from .data import DataError

    if not (folder / "stream.pt").is_file():
        raise DataError(f"checkpoint {folder} holds no stream position: it was not made by a streaming run; "
                        "resume it without --streaming")
    positions = torch.load(folder / "stream.pt", weights_only=False)
    keys = {"epoch", "block_state", "block_number", "taken", "read", "bad"}
    if not isinstance(positions, list) or not all(isinstance(p, dict) and keys <= set(p) for p in positions):
        raise DataError(f"checkpoint {folder}: its stream.pt holds no stream positions (a list with "
                        f"{', '.join(sorted(keys))} per process); resume from another checkpoint (--resume <folder>)")
    if len(positions) != run.accelerator.num_processes:
        raise DataError(f"checkpoint {folder} was made by {len(positions)} process(es) reading the stream, this run "
                        f"has {run.accelerator.num_processes}: each process's share of the shards would change. "
                        f"Resume with {len(positions)} process(es)")
    run.loader.dataset.load_state_dict(positions[run.accelerator.process_index])


def _optimizer_step(run: Run, losses: list[float]) -> None:
    """One optimizer step from the accumulated gradients: averaged over processes, clipped, at the step's LR; not
    taken, and the run stopped on every process, when a micro-batch's loss or the gradient is not finite."""
    accelerator, optimizer = run.accelerator, run.optimizer
    if run.unlocked and accelerator.num_processes > 1:  # the base is not DDP-wrapped: average its gradients
        for p in run.denoiser.parameters():
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
    norm = accelerator.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                       run.config.max_grad_norm)
    _stop_if_diverged(run, losses, norm)
    _apply_lr(optimizer, run.config, run.step)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.step([p for p in accelerator.unwrap_model(run.controlnet).parameters() if p.requires_grad])
    run.step += 1


def _stop_if_diverged(run: Run, losses: list[float], grad_norm: Any) -> None:
    """Raise TrainingDiverged on every process when any process's micro-batch loss, or the gradient norm, is not
    finite. Under fp16's gradient scaler an infinite gradient is expected now and then (the scaler skips that step
    and lowers its scale), so there only the loss counts."""
    bad_loss = first_nonfinite(losses)
    what = None if bad_loss is None else f"the loss is {bad_loss}"
    if what is None and run.accelerator.scaler is None and grad_norm is not None:
        norm = float(grad_norm)
        what = None if math.isfinite(norm) else f"the gradient norm is {norm}"
    if run.any_process(what is not None):
        run.optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(divergence_message(run.step + 1, what or "another process's loss is not finite",
                                                  run.config.lr, _last_checkpoint(run)))


def _refuse_nonfinite_weights(run: Run) -> None:
    """Raise TrainingDiverged on every process when a trained weight (or its EMA) is not finite: nothing is saved
    from such weights, so no finite checkpoint is ever pruned for them."""
    controlnet = run.accelerator.unwrap_model(run.controlnet)
    named = list(controlnet.named_parameters())
    if run.unlocked:
        named += [(f"{run.base['family'].denoiser}.{n}", p) for n, p in run.denoiser.named_parameters()]
    if run.ema is not None:
        named += [(f"ema.{i}", p) for i, p in enumerate(run.ema.shadow_params)]
    bad = nonfinite_tensors((n, p.detach()) for n, p in named)
    if run.any_process(bool(bad)):
        what = f"the weights are not finite ({', '.join(bad)})" if bad else "another process's weights are not finite"
        raise TrainingDiverged(divergence_message(run.step, what, run.config.lr, _last_checkpoint(run)))


def _last_checkpoint(run: Run) -> str | None:
    from .checkpoint import complete_checkpoints

    found = complete_checkpoints(run.out)
    return found[-1][1].name if found else None


def _log(run: Run, mean_loss: float, seconds_per_step: float) -> None:
    """Metrics over all processes (every process joins the reduction), written by the main one."""
    import torch

    stats, accelerator = run.stats, run.accelerator
    if accelerator.num_processes > 1:
        totals = accelerator.reduce(torch.tensor([mean_loss, stats["empty_prompts"], stats["prompts"]],
                                                 device=accelerator.device, dtype=torch.float64), reduction="sum")
        mean_loss = totals[0].item() / accelerator.num_processes
        share = totals[1].item() / max(1.0, totals[2].item())
    else:
        share = stats["empty_prompts"] / max(1, stats["prompts"])
    if not run.main:
        return
    metrics = {"step": run.step, "loss": mean_loss, "lr": run.optimizer.param_groups[0]["lr"],
               "empty_prompt_fraction": share, "seconds_per_step": seconds_per_step,
               "eta_seconds": seconds_per_step * (run.config.max_steps - run.step), "unlocked": run.unlocked}
    try:
        _append_metrics(run.out, metrics)
    except OSError as err:  # a full disk: the metrics line is lost, the next checkpoint says so loudly
        if not is_disk_full(err):
            raise
        run.emit("warning", {"message": f"metrics for step {run.step} not written: "
                                        f"{describe_write_error(err, run.out)}"})
    if run.writer:
        run.writer.add_scalar("train/loss", mean_loss, run.step)
    run.emit("log", metrics)


def save_checkpoint(run: Run) -> Path | None:
    """Every process's generator state gathered, then the main process writes the checkpoint atomically."""
    import torch

    accelerator, step = run.accelerator, run.step
    _refuse_nonfinite_weights(run)
    states = accelerator.gather_for_metrics([run.rng.get_state()], use_gather_object=True)
    # A stream's position, per process (each reads its own shards).
    positions = accelerator.gather_for_metrics([run.loader.dataset.state_dict()], use_gather_object=True) \
        if run.streaming else None
    path, failure = None, None
    if run.main:
        def write(tmp: Path) -> None:
            save_controlnet(accelerator.unwrap_model(run.controlnet), tmp / "controlnet", run.config)
            if run.unlocked:
                run.denoiser.save_pretrained(tmp / run.base["family"].denoiser)
            torch.save(run.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(states, tmp / "rng.pt")
            if run.ema is not None:
                torch.save(run.ema.state_dict(), tmp / "ema.pt")
            if positions is not None:
                torch.save(positions, tmp / "stream.pt")
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "stats": run.stats}))
        try:
            # "finite": checked above, so a resume need not read every weight again (verify_checkpoint).
            path = write_atomically(run.out, step, write, {"mode": run.config.mode, "finite": True},
                                    run.config.keep_checkpoints)
            run.emit("checkpoint", {"step": step, "path": str(path)})
        except CheckpointError as err:
            failure = err
    # Every process learns whether the write failed (a full disk, say) and stops with it, rather than the others
    # waiting forever at the next collective for a main process that is gone.
    if run.any_process(failure is not None):
        raise failure or CheckpointError(f"the main process could not write the checkpoint for step {step}")
    accelerator.wait_for_everyone()
    return path


def _loss(run: Run, batch: dict[str, Any]) -> Any:
    """The family's objective (train/objectives.py) on this batch: the paper's noise prediction for the U-Net
    families, flow matching for the DiTs. The latents and text embeddings come from the run's data source
    (train/sources.py); half the prompts are "" as the paper does, so the ControlNet learns to read the map alone."""
    import torch

    config, rng, stats = run.config, run.rng, run.stats
    bsz = batch["conditioning_pixel_values"].shape[0]
    latents = run.source.latents(batch, rng)
    objective = objective_for(run.base["family"])
    # The draws keep the order they always had (noise and timesteps inside the objective, then the empty prompts):
    # a U-Net run gives the weights it gave before the objectives were split out.
    draws = objective.draws(run, latents)
    empty = (torch.rand(bsz, generator=rng) < config.empty_prompt_prob).tolist()
    texts = ["" if e else t for e, t in zip(empty, batch["text"])]
    stats["empty_prompts"] += sum(empty)
    stats["prompts"] += bsz
    hidden, pooled = run.source.text(batch, texts, empty)
    return objective.loss(run, batch, latents, draws, hidden, pooled)


def _precompute(dataset: Any, base: dict[str, Any], device: Any, weight_dtype: Any, config: TrainConfig
                ) -> dict[str, Any]:
    """Posterior mean/std of every image and the embedding of every distinct prompt (and of ""), with SDXL's pooled
    text beside it."""
    import torch

    vae = base["vae"]

    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), config.batch_size):
            items = [dataset[i] for i in range(start, min(len(dataset), start + config.batch_size))]
            pixels = torch.stack([it["pixel_values"] for it in items]).to(device, weight_dtype)
            dist = vae.encode(pixels).latent_dist
            means.append(dist.mean.cpu())
            stds.append(dist.std.cpu())
        texts = sorted({row.text for row in dataset.rows} | {""})
        prompts, pooled = {}, {}
        for start in range(0, len(texts), 64):
            chunk = texts[start:start + 64]
            hidden, pooled_chunk = encode_text(chunk, base, device)
            for i, text in enumerate(chunk):
                prompts[text] = hidden[i].cpu()
                if pooled_chunk is not None:
                    pooled[text] = pooled_chunk[i].cpu()
    return {"mean": torch.cat(means), "std": torch.cat(stds), "prompts": prompts, "pooled": pooled}


def _optimizer(params: list[Any], config: TrainConfig) -> Any:
    import torch

    if config.use_8bit_adam:
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=config.lr, weight_decay=config.adam_weight_decay)
        except ImportError:
            raise ValueError("use_8bit_adam=True needs bitsandbytes: pip install bitsandbytes") from None
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.adam_weight_decay)


def _unlock(denoiser: Any, optimizer: Any, config: TrainConfig) -> bool:
    """Large mode: the base's denoiser trains too, in its own parameter group with a lower learning rate."""
    denoiser.requires_grad_(True).train()
    inner = getattr(optimizer, "optimizer", optimizer)
    inner.add_param_group({"params": list(denoiser.parameters()), "lr": config.lr * config.unet_lr_scale,
                           "base_lr": config.lr * config.unet_lr_scale})
    return True


def _apply_lr(optimizer: Any, config: TrainConfig, step: int) -> None:
    """Linear warm-up, then constant (the paper's schedule); derived from the step, so resuming needs no state."""
    factor = min(1.0, (step + 1) / config.lr_warmup_steps) if config.lr_warmup_steps else 1.0
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # a trainer installed without tensorboard (requirements.txt has it): metrics.csv still
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _append_metrics(out: Path, metrics: dict[str, Any]) -> None:
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(metrics) + "\n")
    csv_path = out / "metrics.csv"
    new = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics))
        if new:
            writer.writeheader()
        writer.writerow(metrics)


def _write_progress(run: Run, loss: float, seconds_per_step: float) -> None:
    """progress.json after every optimizer step (the Train tab's status line): the step, this process's loss, and
    an ETA from this run's own speed, so a resumed run never shows the previous run's. A tiny atomic write."""
    if not run.main:
        return
    config = run.config
    images = config.batch_size * config.grad_accum * run.accelerator.num_processes  # per optimizer step
    progress = {"phase": "training", "step": run.step, "max_steps": config.max_steps, "loss": loss,
                "seconds_per_step": seconds_per_step, "images_per_second": images / seconds_per_step,
                "eta_seconds": seconds_per_step * (config.max_steps - run.step), **_rows_seen(run)}
    _write_json(run.out / "progress.json", progress)


def _rows_seen(run: Run) -> dict[str, Any]:
    """The data's counts for the status line: a stream's rows read and skipped so far (this process's, times the
    processes: each reads its own share), a folder's rows and skipped ones (those refused when the rows were read,
    and those found bad when loaded, by this process)."""
    dataset = run.loader.dataset
    if run.streaming:
        world = run.accelerator.num_processes
        return {"rows_read": dataset.read * world, "rows_skipped": dataset.bad * world, "rows_estimated": world > 1}
    found = 0
    if isinstance(dataset, ControlNetDataset):  # loader workers keep their own ledgers: then count the log's lines
        found = dataset.ledger.bad if not run.config.num_workers else len(_lines(bad_rows_file(run.out, 0)))
    return {"rows": len(dataset), "rows_skipped": len(run.loaded.skipped) + found}


def _write_json(path: Path, content: dict[str, Any]) -> None:
    """A small status file, replaced atomically; a full disk only delays it (the next checkpoint says so)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(content))
        os.replace(tmp, path)
    except OSError as err:
        if not is_disk_full(err):
            raise


def _validate(run: Run) -> None:
    """Validation images (a grid of [condition | image]) and, when asked, a fidelity score, from the main process."""
    import diffusers
    import torch

    from cnet.engine import make_scheduler

    from .data import load_image, resize_and_crop
    from .validate import run_validation

    accelerator, base, rows, config, step = run.accelerator, run.base, run.validation_rows, run.config, run.step
    out, writer, emit = run.out, run.writer, run.emit
    if accelerator.is_main_process and rows:
        net = accelerator.unwrap_model(run.controlnet)
        net.eval()
        trained = [p for p in net.parameters() if p.requires_grad]
        if run.ema is not None:  # validate what the run will save: the averaged weights
            run.ema.store(trained)
            run.ema.copy_to(trained)
        # The family's own pipeline over the training modules (SDXL: both text encoders), with its default sampler
        # (DDIM, the paper's; flow matching for the DiTs).
        family = base["family"]
        pipeline_class = getattr(diffusers, family.pipelines["txt2img"])
        pipe = pipeline_class(**_pipeline_parts(base, pipeline_class), controlnet=net,
                              scheduler=make_scheduler(family.default_scheduler, base["noise_scheduler"].config))
        pipe.set_progress_bar_config(disable=True)
        conditions = [resize_and_crop(load_image(r.conditioning), config.resolution) for r in rows]
        with torch.no_grad(), accelerator.autocast():
            result = run_validation(pipe, conditions, [r.text for r in rows], steps=config.validation_steps,
                                    guidance=config.validation_guidance, seed=config.seed,
                                    map_argument=family.map_argument,
                                    out_file=out / "validation" / f"step-{step:08d}.png", fidelity=config.fidelity)
        if run.ema is not None:
            run.ema.restore(trained)
        net.train()
        record = {"step": step, "grid": result["grid"], "fidelity": result.get("fidelity"),
                  "metrics": result.get("metrics", {}), "prompts": [r.text for r in rows]}
        if result.get("fidelity_error"):
            record["fidelity_error"] = result["fidelity_error"]
            emit("warning", {"message": f"validation could not score {config.fidelity}: {result['fidelity_error']}"})
        with open(out / "validation.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer:
            import numpy as np

            writer.add_image("validation", np.asarray(result["picture"]), step, dataformats="HWC")
            if record["fidelity"] is not None:
                writer.add_scalar("validation/fidelity", record["fidelity"], step)
        emit("validation", record)
    accelerator.wait_for_everyone()


def _trained_base(run: Run) -> Any:
    """Large mode's result besides the ControlNet: the base pipeline with its trained U-Net, so that it loads like
    any base (the Generate tab, `from_pretrained`) with the ControlNet trained beside it."""
    import diffusers

    pipeline_class = getattr(diffusers, run.base["family"].base_pipeline)
    return pipeline_class(**_pipeline_parts(run.base, pipeline_class), scheduler=run.base["noise_scheduler"])


def _pipeline_parts(base: dict[str, Any], pipeline_class: Any) -> dict[str, Any]:
    """The training modules as the components `pipeline_class` takes (SDXL: both text encoders; SD3.5: three; SD:
    no safety checker)."""
    import inspect

    accepted = inspect.signature(pipeline_class.__init__).parameters
    parts = {k: v for k, v in base.items() if k in accepted and k not in ("scheduler", "controlnet")}
    if base["family"].has_safety_checker:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return parts


def _save_final(controlnet, base, config, loaded, stats, step) -> Path:
    import datetime
    import shutil

    from cnet.families import family_of

    from .checkpoint import CheckpointError, complete_checkpoints, describe_write_error
    from .hub import add_samples

    out = Path(config.output_dir)
    final = out / "controlnet"
    # Written beside the old result and renamed over it: a failed save (a full disk) leaves the old one and the
    # last checkpoint as they were, and no half-written folder.
    staged = [(out / ".tmp-controlnet", final, controlnet)]
    if base is not None:  # large mode: the base it unlocked and trained, as a whole pipeline
        staged.append((out / ".tmp-base", out / "base", base))
    try:
        for tmp, _, model in staged:
            shutil.rmtree(tmp, ignore_errors=True)
            save_controlnet(model, tmp, config) if model is controlnet else model.save_pretrained(tmp)
        samples = add_samples(out, out / ".tmp-controlnet")
        (out / ".tmp-controlnet" / "README.md").write_text(
            model_card(config, loaded, stats, step, datetime.date.today().isoformat(),
                       family_of(controlnet.config), type(controlnet).__name__, samples))
    except Exception as err:
        for tmp, _, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)
        found = complete_checkpoints(out)
        kept = f"; the last checkpoint {found[-1][1]} is intact (--resume latest)" if found else ""
        raise CheckpointError(f"could not save the final ControlNet: {describe_write_error(err, out)}{kept}") \
            from err
    for tmp, target, _ in staged:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    if base is None:  # an earlier large run's base must not be paired with this ControlNet ("Use in Generate")
        shutil.rmtree(out / "base", ignore_errors=True)
    return final


def save_controlnet(controlnet: Any, folder: Path, config: TrainConfig) -> None:
    """A ControlNet in diffusers layout; a LoRA-trained one merged, with its light file beside (train/light.py)."""
    from .light import has_lora, save

    if has_lora(controlnet):
        save(controlnet, folder, config.controlnet_lora_rank, config.init_controlnet)
    else:
        controlnet.save_pretrained(folder)


def _rows_text(config: TrainConfig, loaded: Any, stats: dict[str, int]) -> str:
    """The card's data line. A folder's skipped rows: those refused when the rows were read and those found bad when
    loaded (`stats["rows_skipped"]`, counted at the end), else the first alone."""
    if config.latent_cache:
        return f"read from the latent cache {config.latent_cache}"
    if config.streaming:
        return "streamed"
    return f"{len(loaded.rows)} rows, {stats.get('rows_skipped', len(loaded.skipped))} skipped"


def _light_text(config: TrainConfig) -> str:
    if not config.controlnet_lora_rank:
        return ""
    return (f"; trained as rank-{config.controlnet_lora_rank} LoRA on the copy's attention with its zero layers whole "
            "(merged here; the trained weights alone: `controlnet_lora.safetensors`)")


def _fidelity_text(config: TrainConfig) -> str:
    """The card's fidelity section: the last validation's scores (cnet/metrics.py), where the run scored any."""
    records = [json.loads(line) for line in _lines(Path(config.output_dir) / "validation.jsonl")]
    scored = [r for r in records if r.get("metrics")]
    if not scored:
        return ""
    last = scored[-1]
    rows = (f"held-out rows of `{config.validation_dataset}`" if config.validation_dataset
            else "the first training rows")
    table = "\n".join(f"| {name} | {value:.3f} |" if value is not None else f"| {name} | n/a |"
                      for name, value in last["metrics"].items())
    return f"""
## Fidelity

Validation at step {last['step']}, {len(last.get('prompts', []))} conditions from {rows}, {config.validation_steps}
steps, CFG {config.validation_guidance} (the `{config.fidelity}` metrics of cnet/metrics.py, as `python -m cnet eval`
reports them):

| metric | value |
| --- | --- |
{table}

Compare it with another ControlNet on a held-out set: `python -m cnet eval --kind {config.fidelity} --data HELD_OUT
--controlnet this=path/to/controlnet --controlnet other=...`.
"""


def _hub_dataset(config: TrainConfig) -> str:
    """The card's `datasets:` line when the data is a Hub dataset (an id, not a local folder)."""
    from common.models import HUB_ID

    dataset = config.dataset or ""
    local = Path(dataset).expanduser().exists() or dataset.startswith((".", "/", "~"))
    return f"datasets: [{dataset}]\n" if dataset and not local and HUB_ID.match(dataset) else ""


def _lines(file: Path) -> list[str]:
    return [line for line in file.read_text().splitlines() if line.strip()] if file.is_file() else []


def model_card(config: TrainConfig, loaded: Any, stats: dict[str, int], step: int, date: str,
               family: Any = None, model_class: str = "ControlNetModel", samples: str | None = None) -> str:
    """A Hub-style model card: what this ControlNet is, what it was trained on, and how (`family`: the base's,
    cnet/families.py, SD 1.x when not given; `model_class`: the ControlNet's diffusers class; `samples`: a grid of
    the last validation beside the card)."""
    from cnet.families import FAMILIES

    family = family or FAMILIES["sd15"]
    pipeline = family.pipelines["txt2img"]
    share = stats["empty_prompts"] / max(1, stats["prompts"])
    light = _light_text(config)
    settings = "\n".join(f"| `{k}` | `{v}` |" for k, v in config.to_dict().items() if k not in ("extra",))
    return f"""---
base_model: {config.base_model}
library_name: diffusers
tags: [controlnet, stable-diffusion, {family.name}, cnet-studio{', ' + config.fidelity if config.fidelity else ''}]
{_hub_dataset(config)}---

# ControlNet trained with cnet studio
{f'{chr(10)}![Validation: condition and generated picture per row]({samples}){chr(10)}' if samples else ''}
- Base model: `{config.base_model}`, {family.label} (locked{'; unlocked after step ' + str(config.unlock_after)
                                          if config.mode == 'large' else ''})
- Data: `{config.dataset}` ({loaded.layout}, {_rows_text(config, loaded, stats)})
- Mode: `{config.mode}`; steps: {step}; batch {config.batch_size} x {config.grad_accum} accumulation{light}
- Empty prompts: {share:.1%} of {stats['prompts']} samples (target {config.empty_prompt_prob:.0%})
- Trained on {date}. {json.dumps(config.extra) if config.extra else ''}
{_fidelity_text(config)}

Load it with diffusers:

```python
from diffusers import {model_class}, {pipeline}
controlnet = {model_class}.from_pretrained("path/to/controlnet")
pipe = {pipeline}.from_pretrained("{config.base_model}", controlnet=controlnet)
```

## Settings

| setting | value |
| --- | --- |
{settings}
"""


__all__ = ["train", "model_card"]
