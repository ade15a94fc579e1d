"""Measure JPEG encode and decode costs on this machine: Pillow against simplejpeg.

Run with ``.venv/bin/python bench/bench_codec.py [--iterations N]``. Prints one JSON
line (for machines) and then a table (for people), each case as median and p95 in
milliseconds. The frame is a 512x512 picture with smooth areas, hard edges and a
little sensor-like noise, which compresses like a webcam frame; random noise would
not.

Two comparisons are made. "numpy" rows start from and end at numpy arrays, as a
Gradio handler sees frames; "image" rows start from and end at PIL images, as
fal_stream.frames works between its resize and its encode. simplejpeg rows are
skipped when it is not installed; frames rows when fal_stream is not importable.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import PIL
from PIL import Image, ImageDraw, features

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None

QUALITY = 80
SIZE = 512
WEBCAM_SIZE = (1920, 1440)

Array = npt.NDArray[np.uint8]


def make_frame(width: int, height: int, seed: int = 0, noise: float = 4.0) -> Array:
    """Return an HxWx3 uint8 frame that compresses like a real photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    b = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    base = np.stack([255 * x / width, 255 * y / height, b], axis=-1)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(image)
    scale = width / SIZE
    for i in range(12):
        x0 = int(rng.integers(0, int(width - 120 * scale)))
        y0 = int(rng.integers(0, int(height - 120 * scale)))
        extent = int(int(rng.integers(20, 120)) * scale)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (x0, y0, x0 + extent, y0 + extent)
        if i % 2:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour, outline=(0, 0, 0), width=int(scale))

    noisy = np.asarray(image, np.float32) + rng.normal(0, noise, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def measure(fn: Callable[[], object], iterations: int) -> dict[str, float]:
    """Time ``fn`` and return the median and p95 in milliseconds."""
    for _ in range(max(3, iterations // 20)):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 3),
    }


def pil_encode(image: Image.Image) -> bytes:
    """Encode a PIL image to JPEG with Pillow."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def pil_decode(data: bytes) -> Image.Image:
    """Decode JPEG bytes to a loaded PIL image with Pillow."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def centre_square(image: Image.Image) -> Image.Image:
    """Crop the centre square of an image and resize it to SIZE."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    return image.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box)


def pil_webcam_to_square(data: bytes, *, draft: bool) -> Image.Image:
    """Decode a big JPEG and crop and resize it to SIZE, optionally in draft mode."""
    image = Image.open(io.BytesIO(data))
    if draft:
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale, no smaller than asked.
        image.draft("RGB", (SIZE, SIZE))
    return centre_square(image)


def codec_cases(frame: Array, jpeg: bytes, webcam_jpeg: bytes) -> dict[str, Any]:
    """Return the Pillow and simplejpeg cases, keyed by name."""
    image = Image.fromarray(frame)
    uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    cases: dict[str, Callable[[], object]] = {
        "pil_encode_numpy": lambda: pil_encode(Image.fromarray(frame)),
        "pil_decode_numpy": lambda: np.asarray(pil_decode(jpeg)),
        "pil_encode_image": lambda: pil_encode(image),
        "pil_decode_image": lambda: pil_decode(jpeg),
        "pil_datauri_decode_numpy": lambda: np.asarray(
            pil_decode(base64.b64decode(uri.partition(",")[2]))
        ),
        "pil_webcam_to_512_full": lambda: pil_webcam_to_square(
            webcam_jpeg, draft=False
        ),
        "pil_webcam_to_512_draft": lambda: pil_webcam_to_square(
            webcam_jpeg, draft=True
        ),
    }
    if simplejpeg is None:
        return cases

    sj = simplejpeg

    def sj_encode(array: Array) -> bytes:
        # Pillow subsamples chroma 4:2:0 at quality 80; match it for a fair race.
        encoded: bytes = sj.encode_jpeg(
            array, quality=QUALITY, colorspace="RGB", colorsubsampling="420"
        )
        return encoded

    def sj_decode(data: bytes, **options: int) -> Array:
        decoded: Array = sj.decode_jpeg(data, colorspace="RGB", **options)
        return decoded

    cases.update(
        {
            "simplejpeg_encode_numpy": lambda: sj_encode(frame),
            "simplejpeg_decode_numpy": lambda: sj_decode(jpeg),
            "simplejpeg_encode_image": lambda: sj_encode(np.asarray(image)),
            "simplejpeg_decode_image": lambda: Image.fromarray(sj_decode(jpeg)),
            "simplejpeg_datauri_decode_numpy": lambda: sj_decode(
                base64.b64decode(uri.partition(",")[2])
            ),
            "simplejpeg_webcam_to_512_scaled": lambda: centre_square(
                Image.fromarray(sj_decode(webcam_jpeg, min_height=SIZE, min_width=SIZE))
            ),
        }
    )
    return cases


def frames_cases(
    frame: Array, jpeg: bytes, webcam: Array, webcam_jpeg: bytes
) -> dict[str, Callable[[], object]]:
    """Return the fal_stream.frames pipelines, keyed by name."""
    try:
        from fal_stream import frames
    except ImportError:  # pragma: no cover - run outside the checkout
        return {}
    return {
        "frames_to_model_jpeg_numpy_512": lambda: frames.to_model_jpeg(frame),
        "frames_to_model_jpeg_numpy_webcam": lambda: frames.to_model_jpeg(webcam),
        "frames_to_model_jpeg_jpeg_webcam": lambda: frames.to_model_jpeg(webcam_jpeg),
        "frames_to_model_jpeg_passthrough": lambda: frames.to_model_jpeg(jpeg),
        "frames_to_array_512": lambda: frames.to_array(jpeg),
    }


def saving(results: dict[str, Any], pair: str) -> float:
    """Return simplejpeg's saving over Pillow on encode plus decode, 0.25 = 25%."""
    steps = ("encode", "decode")
    pil = sum(float(results[f"pil_{step}_{pair}"]["median_ms"]) for step in steps)
    sj = sum(float(results[f"simplejpeg_{step}_{pair}"]["median_ms"]) for step in steps)
    return round(1 - sj / pil, 3)


def run(iterations: int) -> dict[str, Any]:
    """Measure every case and return the results keyed by case name."""
    frame = make_frame(SIZE, SIZE)
    jpeg = pil_encode(Image.fromarray(frame))
    # Less noise than the small frame: a real 1920x1440 webcam JPEG is 100-300 KB.
    webcam = make_frame(*WEBCAM_SIZE, seed=1, noise=1.5)
    out = io.BytesIO()
    Image.fromarray(webcam).save(out, "JPEG", quality=92)  # the browser's quality
    webcam_jpeg = out.getvalue()

    cases = codec_cases(frame, jpeg, webcam_jpeg)
    cases.update(frames_cases(frame, jpeg, webcam, webcam_jpeg))
    results: dict[str, Any] = {
        name: measure(fn, iterations) for name, fn in cases.items()
    }
    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "simplejpeg": getattr(simplejpeg, "__version__", None),
        "iterations": iterations,
        "frame_jpeg_bytes": len(jpeg),
        "webcam_jpeg_bytes": len(webcam_jpeg),
    }
    if simplejpeg is not None:
        meta["simplejpeg_saving_numpy"] = saving(results, "numpy")
        meta["simplejpeg_saving_image"] = saving(results, "image")
    results["_meta"] = meta
    return results


def main() -> None:
    """Parse arguments, run the cases and print JSON then a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()

    results = run(args.iterations)
    print(json.dumps(results, sort_keys=True))
    print()
    print(f"{'case':40} {'median ms':>10} {'p95 ms':>10}")
    for name, row in results.items():
        if not name.startswith("_"):
            print(f"{name:40} {row['median_ms']:10.3f} {row['p95_ms']:10.3f}")
    for key, value in results["_meta"].items():
        print(f"# {key}: {value}")


if __name__ == "__main__":
    main()
