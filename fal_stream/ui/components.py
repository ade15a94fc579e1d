"""Variants of Gradio components that suit a live stream.

Stock ``gr.Image`` decodes every webcam frame into an array, and writes every output
frame to a cache file that the browser then fetches. The browser already sends JPEG
and the model already answers JPEG, so the two image variants pass the encoded bytes
through. The slider variant clamps what is typed into it instead of failing.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
from gradio.data_classes import ImageData


class WebcamFrames(gr.Image):
    """A streaming webcam input whose handler receives the browser's data URI.

    The value handed to the handler is the ``data:image/jpeg;base64,...`` string
    the browser captured, undecoded; anything else (an uploaded file) is decoded
    as ``gr.Image`` would, into a numpy array.
    """

    # Marks a variant of a built-in component, so the browser uses gr.Image's own
    # front end instead of looking for a custom one.
    is_template = True

    def preprocess(self, payload: ImageData | None) -> Any:
        if payload is not None and payload.url and payload.url.startswith("data:"):
            return payload.url
        return super().preprocess(payload)


class DataURLImage(gr.Image):
    """An output image set from a ``data:`` URI, with no file written per frame."""

    is_template = True

    def postprocess(self, value: Any) -> ImageData | None:
        if isinstance(value, str) and value.startswith("data:"):
            return ImageData(url=value, mime_type=value[5 : value.find(";")])
        return super().postprocess(value)  # type: ignore[return-value]


class ClampedSlider(gr.Slider):
    """A slider whose typed-in value is clamped into range instead of refused.

    Stock ``gr.Slider`` refuses an out-of-range number before the handler runs,
    which fails every event that takes it as an input until it is corrected.
    """

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        if isinstance(payload, int | float) and math.isfinite(payload):
            payload = min(max(payload, self.minimum), self.maximum)
        return super().preprocess(payload)
