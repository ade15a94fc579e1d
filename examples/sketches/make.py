"""Draw the example sketches the app offers: ``python examples/sketches/make.py``.

They are drawn in code so they can be remade at any size and carry no licence
question; the PNGs beside this file are its output.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 512
INK = (30, 30, 30)
HERE = Path(__file__).parent


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (SIZE, SIZE), "white")
    return image, ImageDraw.Draw(image)


def house() -> Image.Image:
    image, draw = _canvas()
    draw.rectangle((140, 250, 380, 440), outline=INK, width=6)
    draw.line([(120, 260), (260, 120), (400, 260)], fill=INK, width=6, joint="curve")
    draw.rectangle((235, 340, 290, 440), outline=INK, width=5)
    for x in (165, 310):
        draw.rectangle((x, 280, x + 50, 325), outline=INK, width=4)
    draw.rectangle((320, 140, 350, 200), outline=INK, width=5)
    draw.line([(0, 440), (SIZE, 440)], fill=INK, width=4)
    draw.ellipse((40, 40, 110, 110), outline=(230, 160, 0), width=6)
    return image


def cat() -> Image.Image:
    image, draw = _canvas()
    draw.ellipse((126, 150, 386, 400), outline=INK, width=6)
    draw.polygon([(150, 210), (160, 100), (230, 160)], outline=INK, width=6)
    draw.polygon([(362, 210), (352, 100), (282, 160)], outline=INK, width=6)
    for x in (200, 312):
        draw.ellipse((x - 18, 240, x + 18, 276), fill=(60, 160, 60), outline=INK)
    draw.polygon([(244, 300), (268, 300), (256, 316)], fill=(220, 120, 140))
    for side in (-1, 1):
        for dy in (-10, 5, 20):
            x0 = 256 + side * 40
            draw.line(
                [(x0, 310 + dy / 2), (x0 + side * 110, 300 + dy)], fill=INK, width=3
            )
    return image


def mountains() -> Image.Image:
    image, draw = _canvas()
    draw.line(
        [(0, 380), (120, 200), (200, 300), (300, 140), (420, 320), (512, 240)],
        fill=INK,
        width=6,
        joint="curve",
    )
    draw.line([(270, 185), (300, 140), (330, 185)], fill=(120, 160, 220), width=5)
    for i in range(12):
        x = 20 + i * 42
        draw.line([(x, 470), (x + 12, 440), (x + 24, 470)], fill=(40, 120, 40), width=4)
    cx, cy = 420, 90
    for k in range(12):
        angle = k * math.pi / 6
        draw.line(
            [
                (cx + 40 * math.cos(angle), cy + 40 * math.sin(angle)),
                (cx + 60 * math.cos(angle), cy + 60 * math.sin(angle)),
            ],
            fill=(230, 120, 0),
            width=4,
        )
    draw.ellipse((cx - 30, cy - 30, cx + 30, cy + 30), outline=(230, 120, 0), width=5)
    return image


if __name__ == "__main__":
    for make in (house, cat, mountains):
        make().save(HERE / f"{make.__name__}.png", optimize=True)
