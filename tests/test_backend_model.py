"""The built-in backend's preview model: a deterministic CPU paint effect."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from fal_stream.backend.model import PALETTES, palette_for, preview
from fal_stream.errors import BadInputError


def _frame(height: int = 96, width: int = 128) -> npt.NDArray[np.uint8]:
    """A frame with a gradient and a square, so that edges and tones exist."""
    rows, cols = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [
            cols * 255 // max(width - 1, 1),
            rows * 255 // max(height - 1, 1),
            128 + 0 * rows,
        ],
        axis=-1,
    ).astype(np.uint8)
    frame[height // 4 : height // 2, width // 4 : width // 2] = (240, 240, 240)
    return frame


def _paint(**overrides: object) -> npt.NDArray[np.uint8]:
    args: dict[str, object] = {
        "image": _frame(),
        "prompt": "a quiet harbour",
        "strength": 0.8,
        "seed": 1,
        "steps": 4,
    }
    args.update(overrides)
    return preview(**args)  # type: ignore[arg-type]


def test_preview_is_deterministic() -> None:
    """The same arguments give the same pixels."""
    assert np.array_equal(_paint(), _paint())


@pytest.mark.parametrize(
    "change",
    [{"prompt": "a burning forest"}, {"seed": 2}, {"strength": 0.3}, {"steps": 8}],
)
def test_preview_follows_each_argument(change: dict[str, object]) -> None:
    """Changing the prompt, seed, strength or steps changes the output."""
    assert not np.array_equal(_paint(), _paint(**change))


def test_preview_keeps_shape_and_dtype() -> None:
    """The output has the input's shape and is uint8."""
    out = _paint()

    assert out.shape == _frame().shape
    assert out.dtype == np.uint8


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (33, 65), (511, 257)])
def test_preview_takes_odd_sizes(size: tuple[int, int]) -> None:
    """Tiny and odd-sized frames work."""
    frame = _frame(*size)

    assert preview(frame, "x", 1.0, 3, 2).shape == frame.shape


def test_preview_strength_zero_returns_the_input() -> None:
    """At strength 0 the frame comes back as it was."""
    frame = _frame()

    assert np.array_equal(preview(frame, "fire", 0.0, 1, 4), frame)


def test_preview_does_not_modify_its_input() -> None:
    """The input array is left untouched."""
    frame = _frame()
    before = frame.copy()

    preview(frame, "ocean", 1.0, 5, 4)

    assert np.array_equal(frame, before)


def test_preview_colour_words_pick_their_palette() -> None:
    """A colour word paints in its hue: 'red' is redder than 'ocean'."""
    white = np.full((64, 64, 3), 200, dtype=np.uint8)

    red = preview(white, "red", 1.0, 1, 4).astype(int).mean(axis=(0, 1))
    ocean = preview(white, "ocean", 1.0, 1, 4).astype(int).mean(axis=(0, 1))

    assert red[0] > red[2]
    assert ocean[2] > ocean[0]


def test_palette_for_known_words_and_synonyms() -> None:
    """Colour words and their synonyms map to the hand-made palettes."""
    assert palette_for("A SUNSET over hills") == PALETTES["sunset"]
    assert palette_for("deep sea") == PALETTES["ocean"]


def test_palette_for_other_prompts_is_stable_and_varied() -> None:
    """Prompts without colour words get a stable palette of their own."""
    assert palette_for("a cat in a hat") == palette_for("a cat in a hat")
    assert palette_for("a cat in a hat") != palette_for("a dog on a log")
    tones = palette_for("a cat in a hat")
    assert len(tones) == 5
    assert sum(tones[0]) < sum(tones[-1])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((8, 8), dtype=np.uint8),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((8, 8, 3), dtype=np.float32),
    ],
)
def test_preview_refuses_other_arrays(image: npt.NDArray[np.generic]) -> None:
    """Only RGB uint8 arrays are painted."""
    with pytest.raises(BadInputError):
        preview(image, "x", 0.5, 1, 4)  # type: ignore[arg-type]
