"""Conversion of UI frames to the model's input and of model results back.

The UI hands over numpy arrays, PIL images, encoded bytes or ``data:`` URIs; the
model wants a square RGB JPEG. Everything here is pure (no network, no files) and
tuned for one frame every few tens of milliseconds: big JPEGs are decoded at a
reduced scale, and a JPEG that already fits is passed through untouched.

Pillow does all the coding. simplejpeg was measured against it
(``bench/bench_codec.py``): both wrap libjpeg-turbo, and simplejpeg only wins by
skipping the numpy-to-PIL copy (0.1 ms of a 0.5 ms frame); from PIL images,
which is how frames are encoded here after resizing, Pillow is faster.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import threading
import warnings
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import BadInputError

Fit: TypeAlias = Literal["crop", "pad"]
ImageInput: TypeAlias = (
    npt.NDArray[Any] | Image.Image | bytes | bytearray | memoryview | str | None
)

# Limits: 8000x6000 and 50 MP phone photos pass; 25 MiB covers their JPEGs.
MAX_INPUT_PIXELS = 50_000_000
MAX_ENCODED_BYTES = 25 * 1024 * 1024
MAX_SIZE = 4096  # largest output side, in pixels

_WHITE = (255, 255, 255)
_RESAMPLE = Image.Resampling.BILINEAR
# A reducing gap of 1 box-filters by the whole factor first, then resamples by
# less than 2: half the time of a plain bilinear resize at webcam sizes.
_REDUCING_GAP = 1.0
# Accept float arrays that overshoot 0..1 by rounding error only.
_FLOAT_SLACK = 1e-3
_DATA_URI = re.compile(r"data:(image/[-+.\w]+)?;base64,", re.IGNORECASE)
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"ftypavif", 4, "image/avif"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
)
# warnings.catch_warnings swaps process-wide state; two threads interleaving
# their exits would leave each other's filter installed, so ours take turns.
_WARNINGS_LOCK = threading.Lock()


def to_model_jpeg(
    image: ImageInput, *, size: int = 512, quality: int = 80, fit: Fit = "crop"
) -> bytes:
    """Convert a frame to the square RGB JPEG a realtime model takes.

    Transparency becomes white (an empty sketch canvas is white paper), EXIF
    rotation is applied, an animation gives its first frame. CPU only: a few
    milliseconds for a webcam frame.

    Args:
        image: A numpy array (HxW, HxWx1, HxWx2, HxWx3 or HxWx4 of uint8, bool,
            uint16, integers in 0..255 or floats in 0..1), a PIL image of any mode
            (an animated one is rewound to frame 0), encoded bytes in a format
            Pillow reads, or a ``data:image/...;base64,`` URI.
        size: Side of the output in pixels, 1 to ``MAX_SIZE``.
        quality: JPEG quality, 1 to 100; unused when the input passes through.
        fit: ``"crop"`` keeps the centre square; ``"pad"`` keeps everything and
            fills the sides with white.

    Returns:
        The JPEG. An upright RGB JPEG of exactly ``size`` x ``size`` comes back
        as the same bytes, never decoded.

    Raises:
        BadInputError: The input is empty, not an image or over
            ``MAX_INPUT_PIXELS`` or ``MAX_ENCODED_BYTES``; an option is invalid.
    """
    if not (1 <= size <= MAX_SIZE and 1 <= quality <= 100 and fit in ("crop", "pad")):
        raise BadInputError(
            f"use size 1..{MAX_SIZE}, quality 1..100 and fit 'crop' or 'pad'; got "
            f"size={size!r}, quality={quality!r}, fit={fit!r}"
        )

    data = _encoded_bytes(image)
    if data is None:
        im = _source(image)
    else:
        im = _open_encoded(data)
        if (
            im.format == "JPEG"
            and im.size == (size, size)
            and im.mode == "RGB"
            and _orientation(im) == 1
        ):
            return data
        # Must precede load: libjpeg then decodes at 1/2, 1/4 or 1/8 scale,
        # never below the output (its short side for a crop, long for a pad).
        width, height = im.size
        side = min(width, height) if fit == "crop" else max(width, height)
        im.draft(None, (-(-width * size // side), -(-height * size // side)))
        im = _upright(_decode(im))

    out = io.BytesIO()
    _fit(_normalize_mode(im), size, fit).save(out, "JPEG", quality=quality)
    return out.getvalue()


def decode_result_image(image: Mapping[str, Any]) -> bytes:
    """Return the encoded bytes of one image in a fal result, as sent.

    Args:
        image: An entry of a result's ``images`` list, holding ``"content"``
            (bytes) or a ``"url"`` that is a ``data:`` URI.

    Raises:
        BadInputError: The entry holds neither, or an http(s) URL (remote URLs
            are not fetched: ``sync_mode`` makes fal inline images), or more
            than ``MAX_ENCODED_BYTES``, or no known image format.
    """
    content = image.get("content")
    url = image.get("url")
    if isinstance(content, bytes | bytearray | memoryview) and len(content):
        data = bytes(content)
    elif isinstance(url, str) and url.startswith("data:"):
        data = _decode_data_uri(url)
    elif isinstance(url, str) and url.startswith(("http://", "https://")):
        raise BadInputError(
            f"the result image is a remote URL ({url[:60]!r}); remote URLs are "
            "not fetched, so request sync_mode to get the image inline"
        )
    else:
        keys = sorted(map(str, image))
        raise BadInputError(f"the result image has no content or data: url: {keys}")

    _check_length(len(data))
    if sniff_content_type(data) == "application/octet-stream":
        raise BadInputError(f"the result is not an image: {data[:4]!r}...")
    return data


def to_array(encoded: bytes) -> npt.NDArray[np.uint8]:
    """Decode an image in any format Pillow reads to HxWx3 uint8 RGB.

    Transparency becomes white. The array is read-only: copy it to draw on it.

    Raises:
        BadInputError: The bytes are empty, not an image, or too large.
    """
    return np.asarray(_flatten(_normalize_mode(_source(encoded))))


def to_data_uri(encoded: bytes, content_type: str = "image/jpeg") -> str:
    """Wrap an encoded image of type ``content_type`` in a base64 ``data:`` URI."""
    return f"data:{content_type};base64,{base64.b64encode(encoded).decode('ascii')}"


def sniff_content_type(encoded: bytes) -> str:
    """Name an image format from its magic bytes, such as ``"image/png"``.

    Returns ``"application/octet-stream"`` for bytes of no known image format.
    """
    for magic, offset, content_type in _MAGIC:
        if encoded[offset : offset + len(magic)] == magic:
            return content_type
    return "application/octet-stream"


def is_blank(image: ImageInput, *, min_level: int = 250) -> bool:
    """Tell whether an image is empty: white or fully transparent everywhere.

    Args:
        image: Anything :func:`to_model_jpeg` accepts.
        min_level: Channel value from which a pixel counts as white (0..255);
            the default tolerates JPEG ringing on a white page.

    Raises:
        BadInputError: As for :func:`to_model_jpeg`.
    """
    data = _encoded_bytes(image)
    if data is None:
        im = _source(image)
    else:
        im = _open_encoded(data)
        if im.format == "JPEG":
            # A quarter-scale decode is a third of the work and still sees any
            # stroke of the sketchpad's brushes; this runs on every frame.
            im.draft("RGB", (max(1, im.width // 4), max(1, im.height // 4)))
        im = _upright(_decode(im))
    im = _normalize_mode(im)
    if im.mode == "RGBA" and im.getchannel("A").getbbox() is None:
        return True
    return bool(np.asarray(_flatten(im)).min() >= min_level)


def _encoded_bytes(image: object) -> bytes | None:
    """Return the encoded bytes behind ``image``, or None for decoded inputs."""
    if isinstance(image, str):
        return _decode_data_uri(image)
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    return None


def _source(image: ImageInput) -> Image.Image:
    """Return ``image`` as a loaded, upright PIL image within the limits."""
    data = _encoded_bytes(image)
    if data is not None:
        return _upright(_decode(_open_encoded(data)))
    if isinstance(image, np.ndarray):
        return _array_to_pil(image)
    if isinstance(image, Image.Image):
        _check_pixels(image.size)
        if getattr(image, "is_animated", False) and image.tell() != 0:
            image.seek(0)
        return _decode(image)
    if image is None:
        raise BadInputError("no image: got None")
    raise BadInputError(
        f"no image: cannot read one from a {type(image).__name__}; pass a numpy "
        "array, a PIL image, encoded bytes or a data: URI"
    )


def _decode_data_uri(uri: str) -> bytes:
    """Return the bytes of a base64 ``data:`` URI."""
    if not uri:
        raise BadInputError("no image: got an empty string")
    prefix = _DATA_URI.match(uri)
    if prefix is None:
        raise BadInputError(
            f"expected a data:image/...;base64, URI, got {uri[:40]!r}; file paths "
            "and remote URLs are not read"
        )
    payload = uri[prefix.end() :]
    # Base64 is 4/3 of the data: refusing first spares decoding a huge string.
    _check_length(len(payload) * 3 // 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError(
            f"the data: URI holds malformed base64 ({exc}); starts {uri[:40]!r}"
        ) from exc


def _open_encoded(data: bytes) -> Image.Image:
    """Read the header of encoded bytes, enforcing the limits; pixels stay lazy."""
    if not data:
        raise BadInputError("no image: got empty bytes")
    _check_length(len(data))
    try:
        # Pillow warns above its own bomb limit, which is higher than ours, and
        # warnings are errors in tests: turn the warning into a refusal here.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        # Pillow's own wording speaks of attacks; say what is wrong instead.
        raise BadInputError(
            "the image has too many pixels to read; use an image under "
            f"{MAX_INPUT_PIXELS // 1_000_000} megapixels"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(
            f"the input ({len(data)} bytes, {data[:4]!r}...) is not an image PIL "
            "can read (JPEG, PNG, WebP, GIF); send an encoded image"
        ) from exc
    _check_pixels(im.size)
    return im


def _decode(im: Image.Image) -> Image.Image:
    """Decode the pixels of an opened image, translating codec failures."""
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInputError(
            f"the {im.format or 'image'} data is damaged or truncated ({exc}); "
            "send the whole file"
        ) from exc
    return im


def _check_pixels(size: tuple[int, int]) -> None:
    """Refuse empty images and images over MAX_INPUT_PIXELS."""
    width, height = size
    if width < 1 or height < 1:
        raise BadInputError(f"no image: it is {width}x{height} pixels")
    if width * height > MAX_INPUT_PIXELS:
        raise BadInputError(
            f"the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"use an image under {MAX_INPUT_PIXELS // 1_000_000} megapixels"
        )


def _array_to_pil(array: npt.NDArray[Any]) -> Image.Image:
    """Build a PIL image from an HxW[xC] array of any supported dtype."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (
        array.ndim == 3 and array.shape[2] not in (2, 3, 4)
    ):
        raise BadInputError(
            "an image array must be HxW, HxWx3 or HxWx4 (or HxWx1, HxWx2), "
            f"got shape {array.shape}"
        )
    _check_pixels((array.shape[1], array.shape[0]))
    return Image.fromarray(_to_uint8(array))


def _to_uint8(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Scale an array to uint8: bools to 0/255, 16-bit to 8, floats from 0..1."""
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array.view(np.uint8)
    if kind == "b":
        return array.astype(np.uint8) * np.uint8(255)
    if kind == "f":
        low, high = float(array.min()), float(array.max())
        if not (low >= -_FLOAT_SLACK and high <= 1 + _FLOAT_SLACK):
            raise BadInputError(
                f"a float image must hold values in 0..1, got {low:g}..{high:g}; "
                "divide by 255 or pass uint8"
            )
        scaled: npt.NDArray[np.floating[Any]] = np.clip(array, 0.0, 1.0) * 255 + 0.5
        return scaled.astype(np.uint8)
    if kind in "ui":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise BadInputError(
                f"an integer image must hold values in 0..255 (or 0..65535 for "
                f"16 bits), got {low}..{high}"
            )
        # A 16-bit dtype declares the range even when the picture is dark.
        if (kind == "u" and array.dtype.itemsize == 2) or high > 255:
            return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return array.astype(np.uint8)
    raise BadInputError(f"image arrays of dtype {array.dtype} are not supported")


def _normalize_mode(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to L, RGB or RGBA, keeping transparency."""
    mode = im.mode
    if mode in ("L", "RGB", "RGBA"):
        return im
    if mode == "La":
        im = im.convert("LA")
    if mode in ("LA", "La", "RGBa", "PA") or (
        mode == "P" and "transparency" in im.info
    ):
        return im.convert("RGBA")
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I"):
        # PIL would clip 16-bit values at 255; scale them the way arrays are.
        return Image.fromarray(_to_uint8(np.asarray(im)))
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise BadInputError(
            f"images in PIL mode {mode} cannot be converted; convert to RGB first"
        ) from exc


def _flatten(im: Image.Image) -> Image.Image:
    """Return an L, RGB or RGBA image as RGB, transparency over white."""
    if im.mode == "RGB":
        return im
    if im.mode == "L":
        return im.convert("RGB")
    canvas = Image.new("RGB", im.size, _WHITE)
    canvas.paste(im, (0, 0), im)
    return canvas


def _fit(im: Image.Image, size: int, fit: Fit) -> Image.Image:
    """Crop or pad an L, RGB or RGBA image to a size x size RGB image."""
    width, height = im.size
    if fit == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
        target = (size, size)
    else:
        scale = size / max(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        box = (0, 0, width, height)
    if target == (box[2] - box[0], box[3] - box[1]):
        resized = im.crop(box) if box != (0, 0, width, height) else im
    else:
        resized = im.resize(target, _RESAMPLE, box, reducing_gap=_REDUCING_GAP)

    if target == (size, size):
        return _flatten(resized)
    canvas = Image.new("RGB", (size, size), _WHITE)
    offset = ((size - target[0]) // 2, (size - target[1]) // 2)
    canvas.paste(resized, offset, resized if resized.mode == "RGBA" else None)
    return canvas


def _orientation(im: Image.Image) -> int:
    """Return the EXIF orientation (1 is upright); cheap before the pixels load."""
    if "exif" not in im.info:
        return 1
    return int(im.getexif().get(ExifTags.Base.Orientation, 1))


def _upright(im: Image.Image) -> Image.Image:
    """Apply EXIF rotation when there is one."""
    if _orientation(im) == 1:
        return im
    return ImageOps.exif_transpose(im) or im


def _check_length(count: int) -> None:
    """Refuse encoded images over MAX_ENCODED_BYTES."""
    if count > MAX_ENCODED_BYTES:
        raise BadInputError(
            f"the image is {count / 1e6:.1f} MB encoded; use an image under "
            f"{MAX_ENCODED_BYTES // (1024 * 1024)} MB"
        )
