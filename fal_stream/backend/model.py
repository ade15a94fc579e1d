"""The built-in backend's preview model: a fast CPU effect, not AI.

It turns a frame into a posterized "painting" whose palette comes from the prompt,
so that the whole app can be tried with no key and no GPU. Colour words such as
"sunset" or "ocean" pick a hand-made palette; any other prompt gets one derived
from a stable hash of its words. The seed sets the brush texture, ``strength`` how
far the output moves from the input, and ``steps`` how many tones it keeps.
Everything is integer numpy work, a few milliseconds for a 512x512 frame.
"""

from __future__ import annotations

import colorsys
import hashlib
import re

import numpy as np
import numpy.typing as npt
from PIL import Image

from ..errors import BadInputError

Rgb = tuple[int, int, int]
ImageArray = npt.NDArray[np.uint8]

# Each palette runs from its darkest tone to its lightest.
PALETTES: dict[str, tuple[Rgb, ...]] = {
    "red": (
        (45, 6, 12),
        (130, 18, 30),
        (205, 45, 50),
        (245, 125, 110),
        (255, 220, 205),
    ),
    "blue": (
        (6, 12, 45),
        (22, 55, 140),
        (50, 110, 215),
        (125, 175, 250),
        (220, 235, 255),
    ),
    "green": (
        (8, 35, 12),
        (30, 95, 40),
        (70, 160, 70),
        (150, 215, 120),
        (225, 245, 205),
    ),
    "yellow": (
        (60, 45, 5),
        (160, 125, 15),
        (235, 200, 40),
        (250, 230, 110),
        (255, 250, 215),
    ),
    "purple": (
        (30, 8, 45),
        (80, 30, 120),
        (135, 70, 190),
        (190, 140, 235),
        (240, 225, 255),
    ),
    "pink": (
        (60, 15, 40),
        (170, 60, 110),
        (235, 120, 170),
        (250, 180, 210),
        (255, 235, 245),
    ),
    "sunset": (
        (35, 12, 55),
        (120, 30, 90),
        (225, 80, 65),
        (250, 160, 60),
        (255, 230, 150),
    ),
    "forest": (
        (10, 26, 12),
        (32, 70, 32),
        (72, 118, 52),
        (150, 170, 92),
        (222, 230, 182),
    ),
    "ocean": (
        (0, 20, 42),
        (0, 70, 112),
        (20, 130, 170),
        (92, 200, 210),
        (210, 245, 245),
    ),
    "night": (
        (4, 5, 20),
        (20, 25, 70),
        (48, 60, 120),
        (118, 130, 190),
        (232, 230, 160),
    ),
    "fire": ((32, 0, 0), (140, 22, 0), (230, 92, 12), (255, 180, 40), (255, 245, 180)),
    "gold": (
        (45, 30, 5),
        (120, 85, 15),
        (200, 150, 40),
        (240, 205, 100),
        (255, 245, 200),
    ),
    "snow": (
        (40, 55, 75),
        (100, 125, 155),
        (165, 190, 215),
        (215, 230, 245),
        (250, 252, 255),
    ),
    "desert": (
        (60, 30, 15),
        (140, 80, 40),
        (205, 140, 80),
        (235, 195, 135),
        (250, 235, 200),
    ),
    "neon": ((15, 0, 35), (120, 0, 160), (255, 0, 150), (0, 230, 255), (220, 255, 120)),
    "mono": (
        (15, 15, 15),
        (70, 70, 70),
        (130, 130, 130),
        (195, 195, 195),
        (245, 245, 245),
    ),
}

# Other words that mean one of the palettes above.
SYNONYMS: dict[str, str] = {
    "crimson": "red", "blood": "red", "rose": "red", "sky": "blue", "navy": "blue",
    "grass": "green", "jungle": "green", "lemon": "yellow", "sun": "yellow",
    "violet": "purple", "lavender": "purple", "magenta": "pink", "dusk": "sunset",
    "sunrise": "sunset", "dawn": "sunset", "tree": "forest", "trees": "forest",
    "woods": "forest", "sea": "ocean", "water": "ocean", "underwater": "ocean",
    "dark": "night", "moon": "night", "stars": "night", "space": "night",
    "flame": "fire", "flames": "fire", "lava": "fire", "volcano": "fire",
    "golden": "gold", "winter": "snow", "ice": "snow", "frozen": "snow",
    "sand": "desert", "dune": "desert", "cyberpunk": "neon", "synthwave": "neon",
    "black": "mono", "white": "mono", "grey": "mono", "gray": "mono", "pencil": "mono",
}  # fmt: skip

MIN_STEPS = 1
MAX_STEPS = 8
# The texture's octaves: grid spacing in pixels, and weight.
BRUSH_OCTAVES = ((64, 0.7), (16, 0.3))
BRUSH_AMPLITUDE = 26
# How much darker, in luminance steps, the bottom row is painted than the top.
WASH_DEPTH = 70
# Luminance jumps above this between neighbours count as an edge and are inked.
EDGE_THRESHOLD = 40
_WORD = re.compile(r"[a-z]+")


def preview(
    image: ImageArray, prompt: str, strength: float, seed: int, steps: int
) -> ImageArray:
    """Paint ``image`` in the prompt's palette.

    Deterministic: the same arguments always give the same pixels.

    Args:
        image: An RGB frame, ``uint8`` of shape ``(height, width, 3)``.
        prompt: Text whose colour words (or hash) choose the palette.
        strength: 0 returns the input, 1 the full effect; clamped to 0..1.
        seed: Chooses the brush texture; any non-negative integer.
        steps: 1 to 8; more steps keep more tones (clamped).

    Returns:
        A new array of the same shape and dtype.

    Raises:
        BadInputError: ``image`` is not an RGB ``uint8`` array.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BadInputError(
            f"the preview model needs an RGB uint8 image, not {image.dtype} "
            f"of shape {image.shape}"
        )
    height, width = image.shape[:2]
    pixels = image.astype(np.uint16)
    luma = (pixels[..., 0] * 77 + pixels[..., 1] * 150 + pixels[..., 2] * 29) >> 8

    levels = 2 + min(max(steps, MIN_STEPS), MAX_STEPS)
    lut = _posterized_lut(palette_for(prompt), levels)
    # A wash from light at the top to dark at the bottom gives flat areas (the
    # white paper of a sketch) several tones to paint with, like sky and ground.
    # int32: row * depth overflows int16 from row 469 of a 512-row frame.
    rows = np.arange(height, dtype=np.int32)
    wash = (rows * WASH_DEPTH // max(height, 1)).astype(np.int16)[:, None]
    texture = _brush_texture(height, width, seed)
    textured = np.clip(luma.astype(np.int16) - wash + texture, 0, 255)

    # The second half of the table holds the inked tones, so outlines cost no
    # extra pass over the colour channels.
    inked = _edge_mask(luma.astype(np.int16))
    painted = np.concatenate([lut, lut // 3])[textured + (inked * 256)]

    alpha = round(min(max(strength, 0.0), 1.0) * 256)
    mixed: npt.NDArray[np.uint16] = (
        pixels * (256 - alpha) + painted.astype(np.uint16) * alpha
    ) >> 8
    return mixed.astype(np.uint8)


def palette_for(prompt: str) -> tuple[Rgb, ...]:
    """Return the five tones, darkest first, that ``prompt`` paints with.

    Colour words found in the prompt are blended in order of appearance (at most
    two); a prompt without one gets hues from a stable hash of its words.
    """
    words = _WORD.findall(prompt.lower())
    names: list[str] = []
    for word in words:
        name = word if word in PALETTES else SYNONYMS.get(word)
        if name and name not in names:
            names.append(name)
    if names:
        chosen = [PALETTES[name] for name in names[:2]]
        return tuple(_mix(tones) for tones in zip(*chosen, strict=True))
    return _hashed_palette(" ".join(words))


def _mix(tones: tuple[Rgb, ...]) -> Rgb:
    count = len(tones)
    red, green, blue = (sum(tone[i] for tone in tones) // count for i in range(3))
    return (red, green, blue)


def _hashed_palette(text: str) -> tuple[Rgb, ...]:
    # blake2b rather than hash(): Python salts str hashes per process.
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    hue = digest[0] / 256
    spread = (digest[1] / 256 - 0.5) * 0.3
    tones = []
    for index in range(5):
        fraction = index / 4
        rgb = colorsys.hsv_to_rgb(
            (hue + spread * fraction) % 1.0,
            0.75 - 0.5 * fraction,
            0.12 + 0.86 * fraction,
        )
        tones.append((round(rgb[0] * 255), round(rgb[1] * 255), round(rgb[2] * 255)))
    return tuple(tones)


def _posterized_lut(palette: tuple[Rgb, ...], levels: int) -> ImageArray:
    """Map each luminance 0..255 to the palette colour of its tone band."""
    stops = np.asarray(palette, dtype=np.float32)
    band = np.minimum(np.arange(256) * levels // 256, levels - 1)
    position = (band + 0.5) / levels * (len(palette) - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, len(palette) - 1)
    weight = (position - low)[:, None]
    colours = stops[low] * (1 - weight) + stops[high] * weight
    return np.round(colours).astype(np.uint8)


def _brush_texture(height: int, width: int, seed: int) -> npt.NDArray[np.int16]:
    """Return a smooth seeded noise field, like pigment pooling on wet paper.

    Two octaves of random values on coarse grids, enlarged with bicubic
    interpolation: blotches a few brush widths across with finer ripples in them.
    """
    rng = np.random.default_rng(seed)
    field = np.zeros((height, width), dtype=np.float32)
    for cell, weight in BRUSH_OCTAVES:
        grid = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
        layer = Image.fromarray(grid, mode="F").resize(
            (width, height), Image.Resampling.BICUBIC
        )
        field += (np.asarray(layer) - 0.5) * weight
    return np.rint(field * 2 * BRUSH_AMPLITUDE).astype(np.int16)


def _edge_mask(luma: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """Mark pixels where luminance jumps, to ink the outlines of shapes."""
    jump = np.zeros(luma.shape, dtype=np.int16)
    jump[:, :-1] += np.abs(np.diff(luma, axis=1))
    jump[:-1, :] += np.abs(np.diff(luma, axis=0))
    return jump > EDGE_THRESHOLD
