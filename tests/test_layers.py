"""The house's floors: each package imports only the ones below it (read from the source, every import statement),
so no two packages import each other, and the library never imports the UI."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Package -> the project packages it may import. `common` is the ground floor; `webui` (the app) is the top.
ALLOWED = {
    "common": set(),
    "annotators": {"common"},
    "cnet": {"common", "annotators"},
    "train": {"common", "annotators", "cnet"},
    "shapes": {"common", "annotators", "cnet", "train"},
    "webui": {"common", "annotators", "cnet", "train", "shapes"},
}
THIRD_PARTY_UI = {"gradio", "gradio_client"}


def _imports(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, wherever the import sits (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_each_package_imports_only_the_floors_below_it():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in _imports(path) & set(ALLOWED) - {package} - allowed:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_library_never_imports_the_ui():
    for package in ("common", "annotators", "cnet", "train"):
        for path in (ROOT / package).rglob("*.py"):
            assert not _imports(path) & THIRD_PARTY_UI, f"{path.relative_to(ROOT)} imports gradio"


def test_the_check_sees_a_wrong_import(tmp_path):
    """The reader finds imports inside functions too (where the lazy ones are)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from webui.service import Studio\n    import cnet.engine\n")
    assert _imports(module) == {"webui", "cnet"}
