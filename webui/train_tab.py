"""The Train tab: pick a base model, a dataset and a mode; start, watch, stop, resume; use the result in Generate.

Runs are subprocesses (`accelerate launch -m train`) managed by webui/training.py; this module only shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import gradio as gr

from cnet.metrics import METRICS
from cnet.params import as_float, as_int
from train.config import PRECISIONS, TrainConfig
from train.presets import PRESETS

from .errors import keep_results, user_errors
from .training import LOG_LINES, TrainingManager

MODE_HELP = {
    "default": "all 13 links (12 skips + middle block): the paper's standard ControlNet",
    "small": "only the middle block is connected (the paper's small-scale mode; not faster here, see the README); "
             "continue later in default mode",
    "large": "after 'unlock after' steps the base U-Net trains too, at a lower learning rate",
}
DEFAULTS = TrainConfig()
# The validation scores, by kind: the first metric of each (cnet/metrics.py, as `python -m cnet eval` reports them).
FIDELITY_NAMES = {kind: metrics[0].name for kind, metrics in METRICS.items()}


def create_train_tab(manager: TrainingManager, page: gr.Blocks) -> gr.Button:
    """Build the tab inside `page` (the app's Blocks, whose load restores the form of the run shown); returns the
    'Use in Generate' button for app.py to wire."""
    if not manager.allowed:
        gr.Markdown("**Training is off on this public deployment.** Run the app locally, or its operator can set "
                    "`CNET_ALLOW_TRAINING=1`.")
    ui = SimpleNamespace()
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            _settings_form(ui)
            with gr.Row():
                ui.start = gr.Button("Start", variant="primary", interactive=manager.allowed, elem_id="train-start")
                # "Stop (checkpoint first)" wrapped to three lines; the status it returns says a checkpoint comes first.
                ui.stop = gr.Button("Stop", variant="stop", interactive=manager.allowed, elem_id="train-stop")
                ui.resume = gr.Button("Resume", interactive=manager.allowed)
                ui.use = gr.Button("Use in Generate", interactive=manager.allowed, elem_id="train-use")
            with gr.Row():  # the finished result to the Hub, with your own token (HF_TOKEN or `hf auth login`)
                ui.repo_id = gr.Textbox(label="Hub repository (owner/name; empty: the run's name under your user)",
                                        scale=3, elem_id="train-repo-id")
                ui.private = gr.Checkbox(label="Private", scale=1)
                ui.push = gr.Button("Push to Hub", interactive=manager.allowed and not manager.settings.public,
                                    scale=1, elem_id="train-push")
        with gr.Column(scale=5):
            ui.status = gr.Markdown("No run started yet.", elem_id="train-status")
            with gr.Row():
                ui.loss_plot = gr.LinePlot(x="step", y="loss", title="Loss", height=220, elem_id="train-loss")
                # The moment users wait for: fidelity jumps when the model starts to follow its conditions
                # ("sudden convergence"), while the loss stays flat.
                ui.fidelity_plot = gr.LinePlot(x="step", y="fidelity", title="Fidelity (held-out)", height=220,
                                               elem_id="train-fidelity", visible=False)
            ui.gallery = gr.Gallery(label="Validation ([condition | image] per row, newest first)", columns=2,
                                    height=260)
            ui.log = gr.Textbox(label=f"Log (the newest {LOG_LINES} lines of train.log)", lines=LOG_LINES,
                                max_lines=LOG_LINES, autoscroll=True, interactive=False, elem_id="train-log")
    _wire(ui, manager)
    # After a page reload (or an app restart) the tab shows a run: its form shows that run's settings, so Resume and
    # Start act on what is on screen, not on the defaults.
    page.load(lambda: _restore_form(ui, manager), None, [ui.name, *ui.fields.values()], queue=False,
              api_visibility="private")
    return ui.use


def _settings_form(ui: SimpleNamespace) -> None:
    """The run's settings: `ui.fields` maps TrainConfig names (and the preset) to their components."""
    ui.name = gr.Textbox(value="my-controlnet", label="Run name (folder under workspace/runs)",
                         elem_id="train-name")
    base_model = gr.Textbox(value=DEFAULTS.base_model, label="Base model (Hub id or folder)",
                            elem_id="train-base-model")
    dataset = gr.Textbox(label="Dataset (folder in the workspace, or a Hub dataset id such as fusing/fill50k)",
                         elem_id="train-dataset")
    with gr.Row():  # the demo ControlNet on circles: the sudden convergence on a CPU (webui/training.py)
        ui.quick = gr.Button("Quick start: demo circles, ~12 min on a CPU", size="sm", elem_id="train-quick")
        ui.full = gr.Button("Full demo recipe: 2,000 steps", size="sm", elem_id="train-full")
    ui.mode = gr.Radio(list(MODE_HELP), value="default", label="Mode", info=MODE_HELP["default"])
    with gr.Row():
        max_steps = gr.Number(value=DEFAULTS.max_steps, precision=0, label="Max steps")
        batch_size = gr.Number(value=DEFAULTS.batch_size, precision=0, label="Batch size")
        grad_accum = gr.Number(value=DEFAULTS.grad_accum, precision=0, label="Gradient accumulation")
    with gr.Row():
        lr = gr.Number(value=DEFAULTS.lr, label="Learning rate")
        resolution = gr.Number(value=DEFAULTS.resolution, precision=0, label="Resolution")
        empty_prob = gr.Slider(0, 1, value=DEFAULTS.empty_prompt_prob, step=0.05,
                               label="Empty-prompt share (the paper: 0.5)")
    with gr.Accordion("More", open=False):
        with gr.Row():
            unlock_after = gr.Number(value=DEFAULTS.unlock_after, precision=0, label="Unlock after (large)")
            init_controlnet = gr.Textbox(label="Start from a ControlNet (transfer learning; optional)")
            lora_rank = gr.Number(value=DEFAULTS.controlnet_lora_rank, precision=0, minimum=0,
                                  label="Light: LoRA rank (0: the whole copy)", elem_id="train-lora-rank",
                                  info="a LoRA: a few % of the weights")
        with gr.Row():
            checkpoint_every = gr.Number(value=DEFAULTS.checkpoint_every, precision=0, label="Checkpoint every")
            validate_every = gr.Number(value=DEFAULTS.validate_every, precision=0, label="Validate every")
            choices = [("none", ""), *((f"{kind}: {name}", kind) for kind, name in FIDELITY_NAMES.items())]
            fidelity = gr.Dropdown(choices, value="", label="Fidelity score (the kind's metric, validation images)")
        validation_dataset = gr.Textbox(label="Validation dataset (held-out rows, same layouts; optional: the "
                                              "first training rows)")
        with gr.Row():
            streaming = gr.Checkbox(label="Stream the dataset (shards: parquet, arrow, WebDataset .tar; any size, "
                                          "memory stays flat)", elem_id="train-streaming")
            latent_cache = gr.Checkbox(label="Latent cache on disk (encoded once before the first step, in the run "
                                             "folder; resumes reuse it)", elem_id="train-latent-cache")
        with gr.Row():
            mixed_precision = gr.Dropdown(list(PRECISIONS), value="no", label="Mixed precision")
            preset = gr.Dropdown(["auto", "none", *PRESETS], value="auto", label="Memory preset",
                                 info="auto: from the GPU's memory; fills only what you leave at default")
    ui.fields = {"base_model": base_model, "dataset": dataset, "mode": ui.mode, "max_steps": max_steps,
                 "batch_size": batch_size, "grad_accum": grad_accum, "lr": lr, "resolution": resolution,
                 "empty_prompt_prob": empty_prob, "unlock_after": unlock_after, "init_controlnet": init_controlnet,
                 "checkpoint_every": checkpoint_every, "validate_every": validate_every, "fidelity": fidelity,
                 "validation_dataset": validation_dataset, "mixed_precision": mixed_precision, "preset": preset,
                 "streaming": streaming, "latent_cache": latent_cache, "controlnet_lora_rank": lora_rank}


def _settings_from(ui: SimpleNamespace, values: dict) -> dict[str, Any]:
    """TrainConfig settings from the form's values; numbers checked, empty optional fields as None."""
    out = {key: values[comp] for key, comp in ui.fields.items()}
    for key in ("max_steps", "batch_size", "grad_accum", "resolution", "unlock_after", "checkpoint_every",
                "validate_every", "controlnet_lora_rank"):
        out[key] = as_int(out[key], key)
    out["lr"], out["empty_prompt_prob"] = as_float(out["lr"], "lr"), as_float(out["empty_prompt_prob"],
                                                                                "empty_prompt_prob")
    for optional in ("init_controlnet", "fidelity", "validation_dataset"):
        out[optional] = out[optional] or None
    out["streaming"], out["latent_cache"] = bool(out["streaming"]), bool(out["latent_cache"])
    return out


def _render(manager: TrainingManager, run_name: str | None = None) -> list[Any]:
    """Status, loss and fidelity plots, validation images and log of the run being shown."""
    import pandas as pd

    s = manager.status(run_name)
    loss = pd.DataFrame({"step": [m["step"] for m in s.metrics], "loss": [m["loss"] for m in s.metrics]})
    fidelity = pd.DataFrame({"step": [f["step"] for f in s.fidelity], "fidelity": [f["fidelity"] for f in s.fidelity]})
    scored = s.config.get("fidelity")
    if s.fidelity:
        last = s.fidelity[-1]
        score = FIDELITY_NAMES.get(scored, "fidelity")
        better = "lower" if scored in METRICS and not METRICS[scored][0].higher_is_better else "higher"
        message = f"{s.message} Validation {score} ({better} is better) {last['fidelity']:.2f} at step {last['step']}."
    else:
        message = s.message
    if s.fidelity_error:
        message += f" Fidelity not scored: {s.fidelity_error}"
    # Axes over the run's whole length (and a share's whole range): with one point, the plot's own domain was that
    # point, labelled "0.177480" and "50.000000".
    steps = [0, max(s.max_steps or 0, *fidelity["step"], *loss["step"], 1)]
    share = scored in METRICS and METRICS[scored][0].higher_is_better and all(0 <= v <= 1 for v in fidelity["fidelity"])
    return [message, gr.LinePlot(value=loss, x_lim=steps, x_axis_format=",~r", y_axis_format=".3~g"),
            gr.LinePlot(value=fidelity, visible=bool(scored) or bool(s.fidelity), x_lim=steps, x_axis_format=",~r",
                        y_axis_format=".2~f", y_lim=[0, 1] if share else None,
                        y_title=FIDELITY_NAMES.get(scored, "fidelity")),
            s.validation[:6], s.log_tail]


def _restore_form(ui: SimpleNamespace, manager: TrainingManager) -> list[Any]:
    """The shown run's saved settings in the form (unchanged fields where it saved none, or no run is shown)."""
    status = manager.status()
    saved = status.config
    if not saved:
        return [gr.update()] * (1 + len(ui.fields))
    values = []
    for key in ui.fields:
        if key == "preset":  # the saved values already include what a preset filled in
            values.append("none")
        elif key in ("streaming", "latent_cache"):  # boxes: a saved cache folder means the box was ticked
            values.append(bool(saved.get(key)))
        elif key in saved:
            values.append("" if saved[key] is None else saved[key])
        else:
            values.append(gr.update())
    return [status.name, *values]


def _wire(ui: SimpleNamespace, manager: TrainingManager) -> None:
    outputs = [ui.status, ui.loss_plot, ui.fidelity_plot, ui.gallery, ui.log]
    form = {ui.name, *ui.fields.values()}
    ui.mode.change(lambda m: gr.Radio(info=MODE_HELP[m]), ui.mode, ui.mode, queue=False, api_visibility="private")

    @keep_results(len(outputs), status=0)  # a refused start: the message in the status line, the plots kept
    @user_errors
    def on_start(values: dict, resume_run: bool = False) -> list[Any]:
        manager.start(values[ui.name], _settings_from(ui, values), resume=resume_run)
        return _render(manager)

    ui.start.click(on_start, form, outputs, api_visibility="private", concurrency_limit=1)
    ui.resume.click(lambda values: on_start(values, True), form, outputs, api_visibility="private",
                    concurrency_limit=1)

    @keep_results(len(outputs), status=0)
    @user_errors
    def on_stop() -> list[Any]:
        return [manager.stop(), *_render(manager)[1:]]

    ui.stop.click(on_stop, None, outputs, api_visibility="private")

    @keep_results(len(outputs), status=0)  # offline or no result yet: said in the status line, nothing else changes
    @user_errors
    def on_push(name: str, repo_id: str, private: bool) -> list[Any]:
        return [manager.push(name, repo_id, private), *_render(manager)[1:]]

    ui.push.click(on_push, [ui.name, ui.repo_id, ui.private], outputs, api_visibility="private", concurrency_limit=1)
    gr.Timer(2.0).tick(lambda: _render(manager), None, outputs, queue=False, api_visibility="private",
                       show_progress="hidden")
    quick_fields = ["base_model", "dataset", "mode", "max_steps", "batch_size", "grad_accum", "lr", "resolution",
                    "checkpoint_every", "validate_every", "fidelity", "validation_dataset", "streaming",
                    "latent_cache"]

    def fill_with(recipe: str) -> Callable[[], list[Any]]:
        @user_errors
        def fill() -> list[Any]:
            run_name, settings = manager.demo_settings(recipe)
            return [run_name, *(settings[key] for key in quick_fields)]

        return fill

    for button, recipe in ((ui.quick, "quick"), (ui.full, "full")):
        button.click(fill_with(recipe), None, [ui.name, *(ui.fields[key] for key in quick_fields)],
                     api_visibility="private")
