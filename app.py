"""cnet studio: the Gradio app. `python app.py` serves it on http://127.0.0.1:7860.

This file only wires things together: settings (webui/settings.py), the back end (webui/service.py) and one module
per tab. Nothing heavy happens at import or start-up: models load on the first request that needs them.
"""

from __future__ import annotations

import argparse
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from common.env import env_flag, env_text
from webui.api import create_api
from webui.edit_tab import create_edit_tab
from webui.editor import BodyLimit, EditorLimits
from webui.errors import keep_results, user_errors
from webui.generate_tab import create_generate_tab
from webui.history import create_history
from webui.service import Studio
from webui.settings import AppSettings
from webui.train_tab import create_train_tab
from webui.training import TrainingManager

TITLE = "cnet studio — ControlNet for Stable Diffusion"


def gpu_decorator() -> Callable[[Callable], Callable]:
    """`spaces.GPU` on Hugging Face ZeroGPU hardware (when the `spaces` package is installed), else a no-op."""
    if importlib.util.find_spec("spaces") is not None:
        import spaces

        return spaces.GPU
    return lambda fn: fn


def status_summary(studio: Studio) -> str:
    """One line: what is running, and how many models are missing (the details are in `status_markdown`)."""
    statuses = studio.model_status()
    missing = sum(not s.available for s in statuses)
    if studio.demo_mode:
        running = ("**Demo mode**: Stable Diffusion is not on this machine and the Hub is unreachable, so a tiny "
                   "model of coloured circles is running: draw a circle outline. The form is set for it (scribble, "
                   "a Custom prompt such as *red circle with blue background*, 64x64, CFG 5): its small text "
                   "encoder would cut the paper's default prompt to nonsense.")
    else:
        running = f"Base model: `{statuses[0].reference}`."
    if not missing:
        return running + " Every model is on this machine."
    return running + f" {missing} of {len(statuses)} models are not on this machine yet: see *Model details*."


def status_markdown(studio: Studio) -> str:
    """What is missing, and how to get it; empty when every default model is on this machine."""
    missing = [s for s in studio.model_status() if not s.available]
    if not missing:
        return ""
    lines = []
    if studio.demo_mode:
        from cnet.demo import DEMO_NOTICE

        lines.append(f"**Demo mode.** {DEMO_NOTICE}\n")
    lines += ["**Some models are not on this machine yet.** They download on first use when the Hugging Face Hub "
              "is reachable; offline, provide them first:"]
    lines += [f"- {s.role}: `{s.reference}` — {s.hint}" for s in missing]
    return "\n".join(lines)


# Small layout fixes over the theme: a dropdown's text stops before its caret (it ran under it), and the captions
# above the canvases sit close to them.
CSS = """
.secondary-wrap input { padding-right: 1.75rem !important; text-overflow: ellipsis; }
.canvas-caption p { margin: 0.25rem 0 0.1rem; font-weight: 600; }
"""


def harden_image_decoding() -> None:
    """Refuse decompression bombs before they are decoded, wherever an upload is opened (Gradio or us)."""
    import warnings

    from PIL import Image

    from annotators.images import max_pixels

    Image.MAX_IMAGE_PIXELS = max_pixels()
    warnings.simplefilter("error", Image.DecompressionBombWarning)  # above the limit: an error, not a warning


def build_app(settings: AppSettings, workspace: str | None = None) -> tuple[gr.Blocks, Studio]:
    """The Blocks app and its back end; nothing is loaded until a request needs it."""

    harden_image_decoding()
    studio = Studio(settings, training=TrainingManager(settings, workspace))
    gpu = gpu_decorator()
    # Gradio's upload cache is swept hourly of files older than a day.
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"# {TITLE}\nSketch, upload a photo or a ready map, choose a prompt mode, and generate. "
                    "Defaults are the paper's: DDIM, 20 steps, CFG 9.")
        # One line, always; the ten download hints stay folded (open, they pushed Generate below the fold).
        gr.Markdown(status_summary(studio), elem_id="model-summary")
        with gr.Accordion("Model details", open=False):
            gr.Markdown(status_markdown(studio) or "All default models are available locally.",
                        elem_id="model-status")
        editor = EditorLimits.for_deployment(settings.public)  # every canvas's payloads, bounded together
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                generate = create_generate_tab(studio, gpu, editor)
            with gr.Tab("Edit", id="edit"):
                # The base model, its LoRAs and embeddings are the Generate tab's (Advanced settings): one choice.
                edit = create_edit_tab(studio, gpu, models={k: generate[k] for k in (
                    "base_model", "loras", "embeddings", "ip_adapter")}, editor=editor)
            with gr.Tab("Train", id="train"):
                use_result = create_train_tab(studio.training, demo)

        @keep_results(4)  # a run without a result: one notice, the Generate form untouched
        @user_errors
        def use_in_generate() -> list[Any]:
            """The shown run's ControlNet and its base model into Generate's fields, shown open, with a notice."""
            result = studio.training.result_and_base()
            gr.Info(f"Generate now uses the run's ControlNet, {result.what} ({result.controlnet}), on its base "
                    f"model ({result.base_model}): see Advanced settings.")
            return [gr.Tabs(selected="generate"), gr.Accordion(open=True), result.controlnet, result.base_model]

        create_history(studio, generate, edit, tabs)
        use_result.click(use_in_generate, None, [tabs, generate["advanced"], generate["controlnet"],
                                                 generate["base_model"]], api_visibility="private")
        create_api(studio, gpu)
    demo.queue(max_size=settings.max_queue, default_concurrency_limit=1)
    return demo, studio


def launch_options(settings: AppSettings) -> dict[str, Any]:
    """Arguments for `demo.launch`: where to listen, what may be served, how big an upload may be."""
    from gradio.utils import _parse_file_size
    from huggingface_hub import constants
    from starlette.middleware import Middleware

    settings.output_dir.mkdir(parents=True, exist_ok=True)
    # Serve our outputs and nothing else of the disk; never the model cache or secrets.
    blocked = [constants.HF_HOME, str(Path.home() / ".ssh"), str(Path(".env").resolve())]
    # The editors post one image per component_server request: its body is bounded before it is read (Gradio's
    # parser would take 1,000 files of max_file_size each into memory).
    body_limit = Middleware(BodyLimit, paths=("/component_server",),
                            max_bytes=_parse_file_size(settings.max_file_size) + (1 << 20))
    return dict(server_name=settings.host, server_port=settings.port, share=settings.share,
                app_kwargs={"middleware": [body_limit]},
                max_file_size=settings.max_file_size, allowed_paths=[str(settings.output_dir.resolve())],
                blocked_paths=blocked, enable_monitoring=False,
                # Gradio's own errors (bad payloads, paths) name internals such as the working folder: only our
                # gr.Error messages, written for visitors, are shown on public deployments.
                show_error=not settings.public, theme=gr.themes.Soft(), css=CSS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The app's options (what a user of `cnet-studio --help` or `python app.py --help` needs; the module's own
    docstring is for developers)."""
    import sys

    parser = argparse.ArgumentParser(
        prog="cnet-studio" if Path(sys.argv[0]).name == "cnet-studio" else "python app.py",
        description="cnet studio: ControlNet for Stable Diffusion in the browser. Serves the app on "
        "http://127.0.0.1:7860; models load on first use, from the Hub or local folders (offline: the built-in demo "
        "model). Settings beyond these flags are environment variables (README, 'Deployment').")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1; CNET_HOST)")
    parser.add_argument("--port", type=int, help="port (default 7860; CNET_PORT)")
    parser.add_argument("--share", action="store_true", default=None, help="also open a public gradio.live link")
    parser.add_argument("--public", action="store_true", default=None,
                        help="public deployment: listen on 0.0.0.0, tighter limits, Hub ids only (CNET_PUBLIC=1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = AppSettings.from_env(host=args.host, port=args.port, share=args.share, public=args.public)
    demo, studio = build_app(settings)
    if env_flag("CNET_COMPILE") and env_text("CNET_COMPILE_SIZES"):  # compile while the page loads
        threading.Thread(target=studio.warm_up, name="compile-warm-up", daemon=True).start()
    demo.launch(**launch_options(settings))


if __name__ == "__main__":
    main()
