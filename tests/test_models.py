"""Model references, device choice and the offline error."""

import os
import time

import pytest

from cnet.kinds import KINDS, base_model_source, get_kind
from common.models import ModelUnavailableError, parse_model_source, pick_dtype


def test_sources_are_classified(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"x")
    assert parse_model_source("owner/name").kind == "hub"
    hub = parse_model_source("owner/name@v1.1")
    assert (hub.location, hub.revision) == ("owner/name", "v1.1")
    assert parse_model_source(str(tmp_path)).kind == "folder"
    assert parse_model_source(str(tmp_path / "m.safetensors")).kind == "file"


@pytest.mark.parametrize("spec", ["", "/no/such/dir", "./missing.safetensors", "a/b/c", "justname", "../x"])
def test_bad_sources_name_the_value(spec):
    with pytest.raises(ValueError) as err:
        parse_model_source(spec, what="base_model")
    assert "base_model=" in str(err.value)


def test_non_checkpoint_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a checkpoint"):
        parse_model_source(str(tmp_path / "notes.txt"))


def test_registry_has_every_kind_with_env_overrides(monkeypatch):
    monkeypatch.delenv("CNET_CONTROLNET_CANNY", raising=False)
    monkeypatch.delenv("CNET_BASE_MODEL", raising=False)
    assert {"canny", "depth", "openpose", "scribble", "softedge", "mlsd", "lineart", "normal", "seg"} <= set(KINDS)
    canny = get_kind("canny")
    assert canny.controlnet_source() == "lllyasviel/control_v11p_sd15_canny"
    assert {k.name: k.annotator for k in KINDS.values()}["depth"] == "depth"  # the registry owns its defaults
    monkeypatch.setenv("CNET_CONTROLNET_CANNY", "/models/my-canny")
    monkeypatch.setenv("CNET_BASE_MODEL", "someone/fine-tune")
    assert canny.controlnet_source() == "/models/my-canny"
    assert base_model_source() == "someone/fine-tune"
    with pytest.raises(ValueError, match="'sketchy'"):
        get_kind("sketchy")


def test_dtype_choice(monkeypatch):
    import torch

    import common.models

    monkeypatch.delenv("CNET_DTYPE")  # the suite pins float32 (conftest): the automatic choice is tested here
    monkeypatch.setattr(common.models, "cpu_has_bf16_matrix_unit", lambda: False)
    assert pick_dtype("cpu") is torch.float32
    monkeypatch.setattr(common.models, "cpu_has_bf16_matrix_unit", lambda: True)
    assert pick_dtype("cpu") is torch.bfloat16  # AMX: bfloat16 multiplies in hardware, ~3x faster (bench)
    assert pick_dtype("cuda") is torch.float16
    assert pick_dtype("cpu", "bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="dtype='fp8'"):
        pick_dtype("cpu", "fp8")
    monkeypatch.setenv("CNET_DTYPE", "float32")
    assert pick_dtype("cpu") is torch.float32  # the override wins over the hardware's choice


def test_the_bf16_probe_reads_this_cpu():
    from common.models import cpu_has_bf16_matrix_unit

    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("the CPU's flags are read from /proc/cpuinfo (Linux)")
    flags = set(open("/proc/cpuinfo").read().split())
    assert cpu_has_bf16_matrix_unit() == ("amx_bf16" in flags)  # the kernel's word, read apart from torch's


@pytest.mark.parametrize("offline_flag", [True, False])
def test_offline_error_is_fast_and_names_the_repository(monkeypatch, offline_flag):
    from huggingface_hub import constants

    from cnet.engine import Engine

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline_flag)
    # With the flag off, the Hub endpoint is a closed local port: unreachable, as on an offline machine.
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    engine = Engine("cnet-tests/not-a-real-model", device="cpu")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as err:
        engine.load_base()
    assert time.monotonic() - start < 10  # a bound on hanging retries, not a speed test
    message = str(err.value)
    assert "cnet-tests/not-a-real-model" in message
    assert "hf download cnet-tests/not-a-real-model" in message and "CNET_BASE_MODEL" in message


def test_channels_last_is_the_default_on_a_cpu_in_bfloat16_only(monkeypatch):
    from cnet.engine import Engine

    monkeypatch.delenv("CNET_CHANNELS_LAST", raising=False)
    assert Engine("some/base", device="cpu", dtype="bfloat16").channels_last  # 1.3x a live frame (bench/live.py)
    assert not Engine("some/base", device="cpu", dtype="float32").channels_last  # slower there
    monkeypatch.setenv("CNET_CHANNELS_LAST", "0")
    assert not Engine("some/base", device="cpu", dtype="bfloat16").channels_last
