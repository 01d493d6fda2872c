"""The pose editor: a canvas where a person drags OpenPose keypoints (body, hands and face), adds, removes, mirrors
and scales people, undoes, and imports or exports the A1111 openpose-editor's JSON.

It is a `gr.HTML` component whose value is the pose's JSON (annotators/pose.py reads, checks and renders it): the
browser only edits points; the map a run is generated from is drawn on the server by controlnet-aux's OpenPose
drawing, from that JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from annotators.pose import default_pose, pose_json

SCRIPT = (Path(__file__).with_name("pose_editor.js")).read_text()
TEMPLATE = """
<div class="pose-editor">
  <div class="pose-tools">
    <button data-action="add" class="pose-add">Add person</button>
    <button data-action="remove" class="pose-remove">Remove person</button>
    <button data-action="mirror" class="pose-mirror">Mirror</button>
    <button data-action="bigger" class="pose-bigger">Bigger</button>
    <button data-action="smaller" class="pose-smaller">Smaller</button>
    <button data-action="undo" class="pose-undo">Undo</button>
    <button data-action="reset" class="pose-reset">Reset</button>
    <button data-action="export" class="pose-export">Export JSON</button>
    <label class="pose-import">Import JSON <input type="file" accept=".json,application/json"></label>
  </div>
  <canvas class="pose-canvas"></canvas>
  <div class="pose-status"></div>
</div>
"""
STYLE = """
.pose-tools { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 6px; }
.pose-tools button, .pose-import { padding: 4px 10px; border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-sm); background: var(--button-secondary-background-fill); cursor: pointer;
  font-weight: var(--button-large-text-weight, 600); color: var(--button-secondary-text-color); }
.pose-import input { display: none; }
.pose-canvas { max-width: 100%; max-height: 512px; touch-action: none; cursor: crosshair; display: block; }
.pose-status { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin-top: 4px; }
"""


def pose_editor(elem_id: str, width: int = 512, height: int = 512) -> gr.HTML:
    """The editor, starting from one person standing on a `width` x `height` canvas."""
    return gr.HTML(value=json.dumps(pose_json(default_pose(width, height))), html_template=TEMPLATE,
                   css_template=STYLE, js_on_load=SCRIPT, elem_id=elem_id, padding=False)
