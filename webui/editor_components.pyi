"""Gradio's image editors with bounded payloads (the bounds and their checks: webui/editor.py).

Only the two classes live here: Gradio's component metaclass writes a stub of the module that defines a component
class beside it (`editor_components.pyi`, kept in the repository so it is not rewritten at start-up).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .editor import BoundedEditor, EditorLimits

from gradio.events import Dependency

class BoundedImageEditor(BoundedEditor, gr.ImageEditor):
    """`gr.ImageEditor` with bounded payloads (`limits`: this app's `EditorLimits`)."""

    def __init__(self, *args: Any, limits: EditorLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bind(limits)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class BoundedSketchpad(BoundedEditor, gr.Sketchpad):
    """`gr.Sketchpad` with bounded payloads (`limits`: this app's `EditorLimits`)."""

    def __init__(self, *args: Any, limits: EditorLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bind(limits)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component