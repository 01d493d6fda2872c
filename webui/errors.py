"""Turning library errors into messages a visitor sees, instead of tracebacks."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from annotators import AnnotatorError, ImageInputError
from cnet.request import RequestError
from common.models import ModelUnavailableError

log = logging.getLogger("cnet.app")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the library's own messages (bad input, missing model, stop, refusal) as a Gradio error; the app keeps
    serving. Anything else is a bug or a fault: logged whole, shown as one line (without internals on public
    deployments)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cnet.engine import GenerationCancelled, GenerationFailed, is_out_of_memory

        try:
            return fn(*args, **kwargs)
        except GenerationFailed as err:
            raise refusal(str(err), "Generation failed") from None
        except (RequestError, AnnotatorError, ImageInputError, ModelUnavailableError) as err:
            raise refusal(str(err), "Cannot do that") from None
        except GenerationCancelled as err:  # "stopped after step 12 of 150" -> "Stopped: Stopped after step ..."
            raise refusal(str(err)[:1].upper() + str(err)[1:], "Stopped") from None
        except PermissionError as err:  # e.g. TrainingRefused: a rule of this deployment, not a fault
            raise refusal(str(err) if _is_ours(err) else "Not allowed on this deployment.", "Not allowed",
                          logged=str(err)) from None
        except ValueError as err:  # other checks in the libraries (model references, sizes)
            raise refusal(str(err), "Cannot do that") from None
        except gr.Error:
            raise
        except Exception as err:  # a bug or a fault: log it whole, show the visitor one line, keep serving
            if is_out_of_memory(err):
                log.warning("out of memory: %s", err)
                raise refusal("The server ran out of memory for this request; try a smaller size or fewer images.",
                              "Out of memory", logged="") from None
            log.exception("request failed")  # the traceback, once (Gradio's own print is turned off)
            detail = f" ({type(err).__name__}: {err})" if _show_details() else ""
            raise refusal(f"The server could not finish this request{detail}.", "Error", logged="") from None

    return wrapper


def refusal(message: str, title: str, logged: str | None = None) -> gr.Error:
    """The error a visitor is shown, logged as one line (`logged`: what to log instead; "" nothing more). Gradio
    prints a full traceback for every gr.Error unless told not to: a refused request is not a fault."""
    if logged != "":
        log.info("refused (%s): %s", title, (message if logged is None else logged)[:300])
    return gr.Error(message, title=title, print_exception=False)


def _show_details() -> bool:
    """Internals (an exception's type and text) only where the app shows Gradio's own errors too: not on public
    deployments, which launch with show_error=False (app.launch_options)."""
    from gradio.context import LocalContext

    blocks = LocalContext.blocks.get(None)
    return bool(getattr(blocks, "show_error", False))


def _is_ours(err: PermissionError) -> bool:
    # Our refusals carry a message written for visitors; an OS permission error names files: keep those private.
    return type(err) is not PermissionError and err.filename is None


def keep_results(outputs: int, status: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """For UI events that fill result panes: an error (already a `gr.Error` from `user_errors`) is shown once, as a
    notice (and in the `status` output, when there is one), and the other panes keep what they showed: raising would
    mark every pane with an error badge and clear it."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except gr.Error as err:
                title = err.title or "Cannot do that"
                gr.Warning(err.message, title=title)
                kept = [gr.skip()] * outputs
                if status is not None:
                    kept[status] = f"**{title}:** {err.message}"
                return kept[0] if outputs == 1 else kept  # one output takes a value, not a list

        return wrapper

    return decorate
