"""Every environment variable the studio reads is declared once (common/env.py), read only through its readers,
and documented in the README; nothing is read when a module is imported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.env import SETTINGS, declared, env_text

ROOT = Path(__file__).resolve().parents[1]
CODE = [*(p for package in ("common", "cnet", "annotators", "train", "webui", "shapes")
          for p in (ROOT / package).rglob("*.py")), ROOT / "app.py"]
NAME = re.compile(r"\bCNET_[A-Z0-9_]*[A-Z0-9]")


def _names_in(text: str) -> set[str]:
    return {name for name in NAME.findall(text) if not name.endswith("_ENV")}


def test_every_variable_the_code_names_is_declared():
    named = set().union(*(_names_in(path.read_text()) for path in CODE))
    # A family's prefix (f"CNET_CONTROLNET_{kind}") counts as the family.
    undeclared = sorted(name for name in named if not any(s.matches(name) or s.name.startswith(name + "_<")
                                                          for s in SETTINGS))
    assert not undeclared, f"read but not declared in common/env.py: {undeclared}"


def test_the_readme_documents_exactly_the_declared_settings():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if s.name.replace("<KIND>", "").replace("<NAME>", "") not in readme]
    assert not missing, f"declared but not in the README: {missing}"
    documented = _names_in(readme)
    unknown = sorted(name for name in documented if not any(s.matches(name) or s.name.startswith(name + "_<")
                                                            for s in SETTINGS))
    assert not unknown, f"the README names settings the studio does not have: {unknown}"


def test_only_the_readers_touch_the_environment_for_a_setting():
    for path in CODE:
        if path.name == "env.py":
            continue
        for line in path.read_text().splitlines():
            assert not ("os.environ" in line and "CNET_" in line), f"{path.relative_to(ROOT)}: {line.strip()}"


def test_an_undeclared_name_is_refused(monkeypatch):
    monkeypatch.setenv("CNET_TYPO", "1")
    with pytest.raises(KeyError, match="CNET_TYPO is not a setting"):
        env_text("CNET_TYPO")
    assert declared("CNET_CONTROLNET_CANNY").name == "CNET_CONTROLNET_<KIND>"
