"""Measure JPEG encode and decode costs on this machine: Pillow against simplejpeg.

Run with ``.venv/bin/python bench/bench_codec.py [--iterations N]``. Prints one JSON
line (for machines) and then a table (for people), each case as median and p95 in
milliseconds. The frame is a 512x512 picture with smooth areas, hard edges and a
little sensor-like noise, which compresses like a webcam frame; random noise would
not.

simplejpeg is optional: its rows are skipped when it is not installed.
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


def make_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Return an HxWx3 uint8 frame that compresses like a real photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 255 * x / width
    g = 255 * y / height
    b = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    base = np.stack([r, g, b], axis=-1)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(image)
    scale = width / SIZE
    for i in range(12):
        x0, y0 = (
            rng.integers(0, width - 40 * scale),
            rng.integers(0, height - 40 * scale),
        )
        extent = int(rng.integers(20, 120) * scale)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (int(x0), int(y0), int(x0) + extent, int(y0) + extent)
        if i % 2:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(
                box, fill=colour, outline=(0, 0, 0), width=max(1, int(scale))
            )

    noisy = np.asarray(image, dtype=np.int16) + rng.normal(0, 4, (height, width, 3))
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


def pil_encode(frame: np.ndarray) -> bytes:
    """Encode with Pillow the way an app would, from a numpy frame."""
    out = io.BytesIO()
    Image.fromarray(frame).save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def pil_decode(data: bytes) -> np.ndarray:
    """Decode with Pillow to an HxWx3 array."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def pil_to_square(data: bytes, *, draft: bool) -> Image.Image:
    """Decode a big JPEG and crop and resize it to SIZE, optionally in draft mode."""
    with Image.open(io.BytesIO(data)) as image:
        if draft:
            # Asks libjpeg for a DCT-scaled decode no smaller than the target.
            image.draft("RGB", (SIZE, SIZE))
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
        return image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR, box)


def run(iterations: int) -> dict[str, Any]:
    """Measure every case and return the results keyed by case name."""
    frame = make_frame(SIZE, SIZE)
    pil_jpeg = pil_encode(frame)
    data_uri = "data:image/jpeg;base64," + base64.b64encode(pil_jpeg).decode()
    webcam = make_frame(*WEBCAM_SIZE, seed=1)
    out = io.BytesIO()
    Image.fromarray(webcam).save(out, "JPEG", quality=92)
    webcam_jpeg = out.getvalue()

    def uri_decode_pil() -> np.ndarray:
        return pil_decode(base64.b64decode(data_uri.partition(",")[2]))

    cases: dict[str, Callable[[], object]] = {
        "pil_encode": lambda: pil_encode(frame),
        "pil_decode": lambda: pil_decode(pil_jpeg),
        "pil_datauri_decode": uri_decode_pil,
        "pil_webcam_to_512_nodraft": lambda: pil_to_square(webcam_jpeg, draft=False),
        "pil_webcam_to_512_draft": lambda: pil_to_square(webcam_jpeg, draft=True),
    }
    if simplejpeg is not None:
        sj = simplejpeg

        def uri_decode_sj() -> np.ndarray:
            raw = base64.b64decode(data_uri.partition(",")[2])
            return sj.decode_jpeg(raw, colorspace="RGB")

        def webcam_sj() -> Image.Image:
            small = sj.decode_jpeg(
                webcam_jpeg, colorspace="RGB", min_height=SIZE, min_width=SIZE
            )
            image = Image.fromarray(small)
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            box = (left, top, left + side, top + side)
            return image.resize((SIZE, SIZE), Image.Resampling.BILINEAR, box)

        # Pillow subsamples chroma 4:2:0 at quality 80; match it for a fair race.
        cases["simplejpeg_encode_420"] = lambda: sj.encode_jpeg(
            frame, quality=QUALITY, colorspace="RGB", colorsubsampling="420"
        )
        cases["simplejpeg_decode"] = lambda: sj.decode_jpeg(pil_jpeg, colorspace="RGB")
        cases["simplejpeg_datauri_decode"] = uri_decode_sj
        cases["simplejpeg_webcam_to_512_scaled"] = webcam_sj

    try:
        from fal_stream import frames
    except ImportError:
        frames = None  # type: ignore[assignment]
    if frames is not None:
        cases["frames_to_model_jpeg_numpy512"] = lambda: frames.to_model_jpeg(frame)
        cases["frames_to_model_jpeg_webcam"] = lambda: frames.to_model_jpeg(webcam_jpeg)
        cases["frames_to_model_jpeg_passthrough"] = lambda: frames.to_model_jpeg(
            pil_jpeg
        )

    results: dict[str, Any] = {
        name: measure(fn, iterations) for name, fn in cases.items()
    }
    results["_meta"] = {
        "python": platform.python_version(),
        "pillow": Image.__version__,
        "libjpeg_turbo": features.check_feature("libjpeg_turbo"),
        "simplejpeg": getattr(simplejpeg, "__version__", None),
        "iterations": iterations,
        "frame_jpeg_bytes": len(pil_jpeg),
        "webcam_jpeg_bytes": len(webcam_jpeg),
    }
    if simplejpeg is not None:
        pil_pair = (
            results["pil_encode"]["median_ms"] + results["pil_decode"]["median_ms"]
        )
        sj_pair = (
            results["simplejpeg_encode_420"]["median_ms"]
            + results["simplejpeg_decode"]["median_ms"]
        )
        results["_meta"]["simplejpeg_saving_encode_plus_decode"] = round(
            1 - sj_pair / pil_pair, 3
        )
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
