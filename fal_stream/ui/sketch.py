"""A drawing canvas that sends frames while the pen is still moving.

``gr.Sketchpad`` reports a drawing only when the pen lifts, most of a second
later. :func:`live_sketch` is a canvas inside ``gr.HTML`` whose script sets the
component's value a few times a second during a stroke, so a ``.change``
handler sees the drawing grow as it is drawn. The script and style sit next to
this module as ``sketch.js`` and ``sketch.css``.
"""

from __future__ import annotations

import functools
import html
from importlib import resources

import gradio as gr

from fal_stream.errors import BadInputError

MIN_SIZE = 64
MAX_SIZE = 2048
MIN_INTERVAL_MS = 16  # one display frame at 60 Hz; faster sends only queue up

# The palette offered next to the free colour picker.
SWATCHES = (
    ("#000000", "Black"),
    ("#e11d48", "Red"),
    ("#f59e0b", "Orange"),
    ("#16a34a", "Green"),
    ("#2563eb", "Blue"),
    ("#7c3aed", "Purple"),
)

# Gradio evaluates this as a JavaScript template literal: ${size} is a prop.
_TEMPLATE = """
<div class="fs-sketch" role="group" aria-label="{label}">
  <div class="fs-toolbar" role="group" aria-label="Drawing tools">
    <label class="fs-group">Brush
      <input class="fs-size" type="range" min="1" max="64" value="8"
             aria-label="Brush size">
      <output class="fs-size-value" aria-hidden="true">8</output>
    </label>
    <span class="fs-group">
      <input class="fs-color" type="color" value="#000000" aria-label="Brush colour">
      {swatches}
    </span>
    <span class="fs-group">
      <button type="button" class="fs-eraser" aria-pressed="false"
              aria-label="Eraser">Eraser</button>
      <button type="button" class="fs-undo" aria-label="Undo (Ctrl+Z)"
              title="Undo (Ctrl+Z)">Undo</button>
      <button type="button" class="fs-clear"
              aria-label="Clear the canvas">Clear</button>
      <button type="button" class="fs-upload"
              aria-label="Upload a picture to draw over">Picture…</button>
      <input class="fs-file" type="file" accept="image/*" tabindex="-1"
             aria-hidden="true">
    </span>
  </div>
  <canvas class="fs-canvas" width="${size}" height="${size}" tabindex="0"
          role="img" aria-label="Drawing canvas"></canvas>
  <p class="fs-message" role="status" aria-live="polite" hidden></p>
</div>
"""
_SWATCH = (
    '<button type="button" class="fs-swatch" data-color="{color}" '
    'aria-pressed="false" aria-label="{name}" title="{name}"></button>'
)


def live_sketch(
    *,
    size: int = 512,
    elem_id: str = "sketch",
    interval_ms: int = 66,
    quality: float = 0.8,
    label: str = "Sketch",
) -> gr.HTML:
    """Create a live drawing canvas for the current Blocks context.

    The canvas is ``size`` pixels square on white paper and scales to the width
    of its column. Its toolbar has a brush size, a colour picker with swatches,
    an eraser (which paints white), undo (20 steps, also Ctrl/Cmd+Z while the
    sketch has focus), clear, and a button that draws an uploaded picture over
    the whole canvas, scaled to cover it and centre-cropped.

    The value is a ``str``:

    * ``""`` until something is drawn after the page loads;
    * otherwise ``"data:image/jpeg;base64,..."``: the whole canvas as a JPEG of
      exactly ``size`` x ``size`` pixels. Clearing sends an all-white frame.

    A new value is sent while the pen moves (at most once every
    ``interval_ms``), when it lifts, and after clear, undo or an upload, each
    time only if the canvas changed. Wire it with ``.change``, with
    ``concurrency_limit=None`` and ``show_progress="hidden"``; the default
    ``trigger_mode="always_last"`` drops frames the handler is too slow for.

    Setting the value from Python (returning it from an event) to an image
    ``data:`` URL draws that picture on the paper, covering it as an upload
    does; ``""`` clears the paper. Gradio passes such a value to ``.change``
    as it was set, and the canvas then sends its own JPEG rendition of it.

    Args:
        size: Side of the drawing and of every frame, in pixels (64..2048).
        elem_id: HTML id of the component, for CSS and tests.
        interval_ms: Shortest time between two frames during a stroke, in
            milliseconds (at least 16).
        quality: JPEG quality of the frames, above 0 and at most 1.
        label: Accessible name of the component.

    Returns:
        The ``gr.HTML`` component, already placed in the current layout.

    Raises:
        BadInputError: If ``size``, ``interval_ms`` or ``quality`` is out of range.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise BadInputError(f"size must be {MIN_SIZE}..{MAX_SIZE} pixels, not {size}")
    if interval_ms < MIN_INTERVAL_MS:
        raise BadInputError(
            f"interval_ms must be at least {MIN_INTERVAL_MS}, not {interval_ms}"
        )
    if not 0 < quality <= 1:
        raise BadInputError(f"quality must be above 0 and at most 1, not {quality}")

    swatches = "".join(_SWATCH.format(color=c, name=n) for c, n in SWATCHES)
    return gr.HTML(
        "",
        label=label,
        html_template=_TEMPLATE.replace("{swatches}", swatches).replace(
            "{label}", html.escape(label)
        ),
        css_template=_asset("sketch.css"),
        js_on_load=_asset("sketch.js"),
        apply_default_css=False,
        elem_id=elem_id,
        size=size,
        interval_ms=interval_ms,
        quality=quality,
    )


@functools.cache
def _asset(name: str) -> str:
    """Return the text of a file shipped next to this module."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
