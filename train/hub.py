"""Share a trained ControlNet on the Hugging Face Hub: `--push-to-hub` at the end of a run, `python -m train push`
for a run already finished, and the Train tab's Push button, as diffusers' training scripts have.

What goes up is the run's result folder as it is on disk: the ControlNet (diffusers layout; a light run's light file
beside it), its model card (the base, the data, the settings, the fidelity scores of the last validation) and the last
validation grid as `samples.png`. Offline the push is refused before anything else happens, with how to push later;
the result stays where it is whatever the Hub answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

SAMPLES = "samples.png"


class HubUnavailable(ValueError):
    """The Hub cannot be reached (offline, or no network): nothing was pushed; the message says how to push later."""


def check_hub_reachable(what: str, later: str) -> None:
    """HubUnavailable naming `what` could not be done and the `later` command that does it, when the Hub cannot be
    used now (HF_HUB_OFFLINE, or its host does not answer in 3 s)."""
    from common.models import hub_is_offline

    if hub_is_offline():
        raise HubUnavailable(f"{what}: the Hugging Face Hub is unreachable from here (offline, or HF_HUB_OFFLINE is "
                             f"set). Nothing was pushed and nothing is lost; where there is network: {later}")


def add_samples(run_dir: Path, result: Path) -> str | None:
    """The run's last validation grid copied into the result as samples.png; its name, or None without one."""
    grids = sorted((run_dir / "validation").glob("step-*.png"))
    if not grids:
        return None
    shutil.copyfile(grids[-1], result / SAMPLES)
    return SAMPLES


def default_repo_name(run_dir: str | Path) -> str:
    """The repository's name when none is given: the run folder's (the Hub puts it under the token's user)."""
    return Path(run_dir).resolve().name


def push_run(run_dir: str | Path, repo_id: str | None = None, *, private: bool = False, token: str | None = None
             ) -> str:
    """Upload run `run_dir`'s result folder to the Hub repository `repo_id` (created if missing; default: the run
    folder's name under the token's user); return its URL. ValueError naming what is missing (no result yet),
    HubUnavailable offline."""
    run = Path(run_dir)
    result = run / "controlnet"
    if not run.is_dir():
        raise ValueError(f"run={str(run_dir)!r} does not exist (a training run's --output-dir)")
    if not (result / "config.json").is_file():
        raise ValueError(f"run={str(run_dir)!r} has no result to push yet ({result} is written when the run reaches "
                         "its last step); a stopped run can be resumed first")
    later = f"python -m train push --run {run} --repo-id {repo_id or default_repo_name(run)}"
    check_hub_reachable(f"pushing {result}", later)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    steps = _json(run / "progress.json").get("step")
    try:
        name = repo_id or f"{hub_user(api)}/{default_repo_name(run)}"
        url = api.create_repo(name, private=private, exist_ok=True).repo_id
        api.upload_folder(repo_id=url, folder_path=str(result), commit_message=f"ControlNet trained with cnet studio "
                          f"({steps} steps)" if steps else "ControlNet trained with cnet studio")
    except (OSError, ValueError) as err:  # huggingface_hub's HTTP and token errors are OSErrors and ValueErrors
        raise ValueError(f"pushing {result} failed ({type(err).__name__}: {str(err)[:300]}); nothing on disk "
                         f"changed: {later}") from None
    return f"https://huggingface.co/{url}"


def hub_user(api: object | None = None) -> str:
    """The user the Hub token belongs to; ValueError saying how to log in when there is no usable token."""
    from huggingface_hub import HfApi

    try:
        return (api or HfApi()).whoami()["name"]
    except (OSError, ValueError, KeyError) as err:  # no token, a revoked one, no network
        raise ValueError(f"no usable Hugging Face token ({type(err).__name__}): log in with `hf auth login` or set "
                         "HF_TOKEN, with write access") from None


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
