"""Gradio pieces of fal_stream's user interface."""

from fal_stream.ui.sketch import live_sketch

__all__ = ["live_sketch"]
