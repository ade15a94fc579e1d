"""Tests for fal_stream.frames: frame conversion to the model's JPEG and back."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fal_stream import frames
from fal_stream.errors import BadInputError

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(im: Image.Image, fmt: str, **options: Any) -> bytes:
    """Encode a PIL image to bytes in the given format."""
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    """Open encoded bytes and load them."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def assert_model_jpeg(data: bytes, size: int = 512) -> Image.Image:
    """Check that data is a size x size RGB JPEG and return it decoded."""
    im = decode(data)
    assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (size, size))
    return im


def assert_colour(actual: Any, expected: tuple[int, ...], slack: int = 12) -> None:
    """Check a pixel against a colour, allowing for JPEG error."""
    assert all(abs(a - e) <= slack for a, e in zip(actual, expected, strict=True)), (
        actual,
        expected,
    )


def png_header(width: int, height: int) -> bytes:
    """Return a PNG that claims the given size but carries no pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def three_bars(width: int = 300, height: int = 100) -> Image.Image:
    """Return a wide image: red, green and blue vertical thirds."""
    im = Image.new("RGB", (width, height), GREEN)
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, width // 3 - 1, height), fill=RED)
    draw.rectangle((2 * width // 3, 0, width, height), fill=BLUE)
    return im


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "La", "PA", "RGBa", "I;16"]
PIL_MODES += ["I;16B", "I", "F", "CMYK", "YCbCr", "HSV", "LAB"]


@pytest.mark.parametrize("mode", PIL_MODES)
def test_to_model_jpeg_accepts_every_pil_mode(mode: str) -> None:
    """A PIL image in any common mode becomes a 512x512 RGB JPEG."""
    assert_model_jpeg(frames.to_model_jpeg(Image.new(mode, (64, 48))))


@pytest.mark.parametrize(
    ("mode", "value"),
    [("1", 1), ("L", 255), ("I;16", 65535), ("I", 65535), ("F", 255.0)],
)
def test_to_model_jpeg_scales_high_depth_modes_to_white(mode: str, value: Any) -> None:
    """The top value of 1-bit, 16-bit, 32-bit and float images maps to white."""
    im = assert_model_jpeg(frames.to_model_jpeg(Image.new(mode, (8, 8), value)))
    assert_colour(im.getpixel((256, 256)), WHITE, slack=2)


def test_to_model_jpeg_keeps_palette_colours() -> None:
    """A palette image keeps its colours, with and without transparency."""
    opaque = Image.new("RGB", (16, 16), RED).convert("P")
    assert_colour(decode(frames.to_model_jpeg(opaque)).getpixel((9, 9)), RED)
    transparent = Image.new("P", (16, 16), 0)
    transparent.putpalette([255, 0, 0, 0, 0, 255])
    transparent.info["transparency"] = 0
    assert_colour(decode(frames.to_model_jpeg(transparent)).getpixel((9, 9)), WHITE)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((20, 30), 200, np.uint8), (200, 200, 200)),
        (np.full((20, 30, 1), 200, np.uint8), (200, 200, 200)),
        (np.full((20, 30, 3), (255, 0, 0), np.uint8), RED),
        (np.full((20, 30, 4), (0, 0, 255, 255), np.uint8), BLUE),
        (np.full((20, 30, 2), (0, 255), np.uint8), (0, 0, 0)),
        (np.ones((20, 30), bool), WHITE),
        (np.zeros((20, 30, 3), bool), (0, 0, 0)),
        (np.full((20, 30, 3), 65535, np.uint16), WHITE),
        (np.full((20, 30, 3), 32896, np.uint16), (128, 128, 128)),
        (np.full((20, 30, 3), 128, np.int64), (128, 128, 128)),
        (np.full((20, 30, 3), (1.0, 0.5, 0.0), np.float32), (255, 128, 0)),
        (np.full((20, 30), 1.0, np.float64), WHITE),
        (np.full((20, 30), 0.25, np.float16), (64, 64, 64)),
    ],
)
def test_to_model_jpeg_converts_numpy_dtypes_and_shapes(
    array: np.ndarray, expected: tuple[int, int, int]
) -> None:
    """Arrays of each supported shape and dtype convert to the expected colour."""
    im = assert_model_jpeg(frames.to_model_jpeg(array))
    assert_colour(im.getpixel((256, 256)), expected, slack=3)


def test_to_model_jpeg_reads_strided_arrays() -> None:
    """A mirrored (negative-stride) view converts like a copy of it."""
    array = np.zeros((64, 64, 3), np.uint8)
    array[:, :32] = RED
    im = decode(frames.to_model_jpeg(array[:, ::-1]))
    assert_colour(im.getpixel((500, 256)), RED)
    assert_colour(im.getpixel((10, 256)), (0, 0, 0))


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.full((4, 4, 3), 2.0, np.float32), "0..1"),
        (np.full((4, 4), np.nan, np.float32), "0..1"),
        (np.full((4, 4), -3, np.int16), "0..255"),
        (np.full((4, 4), 70000, np.int32), "0..255"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros((4, 4), np.complex64), "dtype"),
        (np.zeros((0, 4, 3), np.uint8), "no image"),
    ],
)
def test_to_model_jpeg_refuses_unusable_arrays(array: np.ndarray, words: str) -> None:
    """Arrays of the wrong range, shape or dtype raise BadInputError."""
    with pytest.raises(BadInputError, match=words):
        frames.to_model_jpeg(array)


def test_to_model_jpeg_upscales_a_single_pixel() -> None:
    """A 1x1 image fills the whole output with its colour."""
    im = assert_model_jpeg(frames.to_model_jpeg(Image.new("RGB", (1, 1), RED)))
    for xy in [(0, 0), (256, 256), (511, 511)]:
        assert_colour(im.getpixel(xy), RED)


@pytest.mark.parametrize("size", [1, 64, 768])
def test_to_model_jpeg_honours_size(size: int) -> None:
    """The output side is the requested size."""
    assert_model_jpeg(frames.to_model_jpeg(three_bars(), size=size), size)


def test_to_model_jpeg_crop_keeps_the_centre() -> None:
    """fit="crop" keeps the centre square of a wide image."""
    im = decode(frames.to_model_jpeg(three_bars(), fit="crop"))
    for xy in [(5, 5), (256, 256), (506, 506)]:
        assert_colour(im.getpixel(xy), GREEN)


def test_to_model_jpeg_pad_letterboxes_on_white() -> None:
    """fit="pad" keeps the whole image, centred, with white bands."""
    im = decode(frames.to_model_jpeg(three_bars(), fit="pad"))
    # 300x100 scales to 512x171, pasted at y=170.
    assert_colour(im.getpixel((256, 100)), WHITE)
    assert_colour(im.getpixel((256, 420)), WHITE)
    assert_colour(im.getpixel((40, 256)), RED)
    assert_colour(im.getpixel((256, 256)), GREEN)
    assert_colour(im.getpixel((470, 256)), BLUE)


def test_to_model_jpeg_pad_flattens_alpha_on_white() -> None:
    """fit="pad" with a transparent image keeps opaque pixels and whitens the rest."""
    im = Image.new("RGBA", (100, 50), (0, 0, 0, 0))
    im.paste((0, 0, 255, 255), (40, 0, 60, 50))
    out = decode(frames.to_model_jpeg(im, fit="pad"))
    assert_colour(out.getpixel((256, 256)), BLUE)
    assert_colour(out.getpixel((50, 256)), WHITE)
    assert_colour(out.getpixel((256, 50)), WHITE)


def test_to_model_jpeg_flattens_alpha_on_white() -> None:
    """Transparent pixels become white, half-transparent black becomes grey."""
    array = np.zeros((64, 64, 4), np.uint8)
    array[:, :32] = (255, 0, 0, 0)
    array[:, 32:] = (0, 0, 0, 128)
    im = decode(frames.to_model_jpeg(array))
    assert_colour(im.getpixel((100, 256)), WHITE)
    assert_colour(im.getpixel((400, 256)), (127, 127, 127))


def test_to_model_jpeg_passes_a_fitting_jpeg_through() -> None:
    """A 512x512 RGB JPEG is returned as the same bytes object, not re-encoded."""
    jpeg = encode(three_bars(512, 512), "JPEG", quality=95)
    assert frames.to_model_jpeg(jpeg) is jpeg
    assert frames.to_model_jpeg(bytearray(jpeg)) == jpeg
    assert frames.to_model_jpeg(memoryview(jpeg)) == jpeg
    assert frames.to_model_jpeg(frames.to_data_uri(jpeg)) == jpeg


def test_to_model_jpeg_reencodes_jpegs_that_do_not_fit() -> None:
    """A JPEG of another size, or a grey one, is converted instead."""
    wrong_size = encode(three_bars(512, 512), "JPEG")
    assert_model_jpeg(frames.to_model_jpeg(wrong_size, size=256), 256)
    grey = encode(Image.new("L", (512, 512), 90), "JPEG")
    assert frames.to_model_jpeg(grey) != grey
    assert_model_jpeg(frames.to_model_jpeg(grey))


def test_to_model_jpeg_applies_exif_rotation() -> None:
    """A JPEG with an EXIF orientation is turned upright, not passed through."""
    im = Image.new("RGB", (512, 512), BLUE)
    im.paste(RED, (0, 0, 256, 512))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    jpeg = encode(im, "JPEG", exif=exif)
    out = decode(frames.to_model_jpeg(jpeg))
    assert_colour(out.getpixel((256, 50)), RED)
    assert_colour(out.getpixel((256, 460)), BLUE)


def test_to_model_jpeg_decodes_a_big_jpeg_reduced() -> None:
    """An 8000x6000 JPEG converts, its centre kept."""
    im = Image.new("L", (8000, 6000), 30)
    im.paste(220, (3000, 2000, 5000, 4000))
    jpeg = encode(im, "JPEG", quality=50)
    del im
    out = assert_model_jpeg(frames.to_model_jpeg(jpeg))
    assert_colour(out.getpixel((256, 256)), (220, 220, 220))
    assert_colour(out.getpixel((5, 5)), (30, 30, 30))


def test_to_model_jpeg_decodes_a_big_png() -> None:
    """An 8000x6000 PNG (no reduced decoding) converts too."""
    png = encode(Image.new("1", (8000, 6000), 1), "PNG")
    out = assert_model_jpeg(frames.to_model_jpeg(png, fit="pad"))
    assert_colour(out.getpixel((256, 256)), WHITE)


@pytest.mark.parametrize(
    "size",
    [(10_000, 6_000), (10_000, 10_000), (100_000, 100_000)],
    ids=["over-our-limit", "over-pillow-warning", "over-pillow-error"],
)
def test_to_model_jpeg_refuses_too_many_pixels(size: tuple[int, int]) -> None:
    """An image over MAX_INPUT_PIXELS is refused, whatever Pillow would say."""
    with pytest.raises(BadInputError, match="use an image under 50 megapixels"):
        frames.to_model_jpeg(png_header(*size))


def test_to_model_jpeg_refuses_too_big_arrays() -> None:
    """An array over MAX_INPUT_PIXELS is refused before any conversion."""
    # np.zeros maps untouched pages, so this costs no real memory.
    with pytest.raises(BadInputError, match="megapixels"):
        frames.to_model_jpeg(np.zeros((10_000, 6_000), np.float32))


def test_to_model_jpeg_refuses_too_many_bytes() -> None:
    """Encoded inputs over MAX_ENCODED_BYTES are refused before decoding."""
    big = b"\xff\xd8\xff" + bytes(frames.MAX_ENCODED_BYTES)
    with pytest.raises(BadInputError, match="use an image under 25 MB"):
        frames.to_model_jpeg(big)
    with pytest.raises(BadInputError, match="use an image under 25 MB"):
        frames.to_model_jpeg(frames.to_data_uri(big))


def test_to_model_jpeg_takes_the_first_frame_of_an_animation() -> None:
    """Animated GIFs give their first frame, from bytes and from PIL."""
    first, second = Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)
    gif = encode(first, "GIF", save_all=True, append_images=[second], duration=50)
    assert_colour(decode(frames.to_model_jpeg(gif)).getpixel((256, 256)), RED)
    opened = Image.open(io.BytesIO(gif))
    opened.seek(1)
    assert_colour(decode(frames.to_model_jpeg(opened)).getpixel((256, 256)), RED)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_to_model_jpeg_reads_encoded_formats(fmt: str) -> None:
    """Encoded images of the usual formats convert."""
    data = encode(Image.new("RGB", (40, 30), RED), fmt)
    assert_colour(decode(frames.to_model_jpeg(data)).getpixel((256, 256)), RED)


def test_to_model_jpeg_reads_cmyk_and_16_bit_files() -> None:
    """A CMYK JPEG and a 16-bit grey PNG convert with the right colours."""
    cmyk = encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")
    assert_colour(decode(frames.to_model_jpeg(cmyk)).getpixel((256, 256)), RED)
    grey16 = encode(Image.new("I;16", (40, 30), 65535), "PNG")
    assert_colour(decode(frames.to_model_jpeg(grey16)).getpixel((256, 256)), WHITE)


def test_to_model_jpeg_refuses_non_images() -> None:
    """Bytes that are no image raise BadInputError naming what PIL reads."""
    with pytest.raises(BadInputError, match="is not an image PIL can read"):
        frames.to_model_jpeg(b"hello, this is text")


def test_to_model_jpeg_refuses_truncated_images() -> None:
    """A cut-off JPEG or PNG raises BadInputError, not an OSError."""
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    for fmt in ["JPEG", "PNG"]:
        data = encode(Image.fromarray(noisy), fmt)
        with pytest.raises(BadInputError, match="damaged or truncated"):
            frames.to_model_jpeg(data[: len(data) // 2])


@pytest.mark.parametrize("empty", [None, b"", "", bytearray()])
def test_to_model_jpeg_refuses_empty_input(empty: Any) -> None:
    """None and empty inputs raise BadInputError saying there is no image."""
    with pytest.raises(BadInputError, match="no image"):
        frames.to_model_jpeg(empty)


def test_to_model_jpeg_refuses_other_types() -> None:
    """Inputs of an unknown type raise BadInputError naming the type."""
    with pytest.raises(BadInputError, match="list"):
        frames.to_model_jpeg([1, 2, 3])  # type: ignore[arg-type]


def test_to_model_jpeg_reads_data_uris() -> None:
    """A PNG data URI converts, with or without a media type."""
    png = encode(Image.new("RGB", (40, 30), BLUE), "PNG")
    payload = base64.b64encode(png).decode()
    for uri in [f"data:image/png;base64,{payload}", f"data:;base64,{payload}"]:
        assert_colour(decode(frames.to_model_jpeg(uri)).getpixel((9, 9)), BLUE)


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("data:image/png;base64,not*base64!", "malformed base64"),
        ("data:image/png;base64,QUJ", "malformed base64"),
        ("data:text/plain;base64,aGVsbG8=", "expected a data:image"),
        ("data:image/png,rawtext", "expected a data:image"),
        ("data:image/png;base64", "expected a data:image"),
        ("https://example.invalid/cat.png", "expected a data:image"),
        ("/tmp/cat.png", "file paths"),
    ],
)
def test_to_model_jpeg_refuses_bad_data_uris(uri: str, words: str) -> None:
    """Malformed base64, other media types and non-data strings are refused."""
    with pytest.raises(BadInputError, match=words):
        frames.to_model_jpeg(uri)


@pytest.mark.parametrize(
    "options",
    [{"size": 0}, {"size": 5000}, {"quality": 0}, {"quality": 101}, {"fit": "fill"}],
)
def test_to_model_jpeg_refuses_bad_options(options: dict[str, Any]) -> None:
    """Out-of-range size, quality and fit raise BadInputError."""
    with pytest.raises(BadInputError):
        frames.to_model_jpeg(three_bars(), **options)


def test_decode_result_image_reads_content_and_data_urls() -> None:
    """Both inline forms of a fal result image give the encoded bytes."""
    jpeg = encode(three_bars(), "JPEG")
    assert frames.decode_result_image({"content": jpeg, "width": 300}) == jpeg
    url = frames.to_data_uri(jpeg)
    assert frames.decode_result_image({"url": url, "content_type": "x"}) == jpeg


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"url": "https://v3.fal.media/files/cat.jpeg"}, "remote URLs are not fetched"),
        ({"url": "http://localhost/cat.jpeg"}, "remote URLs are not fetched"),
        ({"width": 512}, "no content or data: url"),
        ({"content": b""}, "no content or data: url"),
        ({"content": b"plain text, not an image"}, "not an image"),
        ({"url": "data:image/jpeg;base64,@@@@"}, "malformed base64"),
    ],
)
def test_decode_result_image_refuses_unusable_entries(
    entry: dict[str, Any], words: str
) -> None:
    """Remote URLs, missing data and non-images raise BadInputError."""
    with pytest.raises(BadInputError, match=words):
        frames.decode_result_image(entry)


def test_decode_result_image_refuses_oversized_content() -> None:
    """Result content over MAX_ENCODED_BYTES is refused."""
    big = b"\xff\xd8\xff" + bytes(frames.MAX_ENCODED_BYTES)
    with pytest.raises(BadInputError, match="25 MB"):
        frames.decode_result_image({"content": big})


def test_to_array_round_trips_a_lossless_image() -> None:
    """A PNG decodes to exactly the array it was made from."""
    array = np.random.default_rng(1).integers(0, 256, (30, 40, 3), np.uint8)
    decoded = frames.to_array(encode(Image.fromarray(array), "PNG"))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, array)


def test_to_array_flattens_alpha_and_grey() -> None:
    """Transparent PNG pixels come back white, grey ones as three channels."""
    rgba = encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG")
    assert frames.to_array(rgba)[0, 0].tolist() == list(WHITE)
    grey = frames.to_array(encode(Image.new("L", (4, 3), 77), "PNG"))
    assert grey.shape == (3, 4, 3)
    assert grey[0, 0].tolist() == [77, 77, 77]


def test_to_array_reads_model_jpeg_output() -> None:
    """to_array undoes to_model_jpeg up to JPEG error."""
    array = np.full((512, 512, 3), (10, 200, 90), np.uint8)
    decoded = frames.to_array(frames.to_model_jpeg(array))
    assert decoded.shape == (512, 512, 3)
    assert np.abs(decoded.astype(int) - array).max() <= 3


def test_to_array_refuses_non_images() -> None:
    """Bytes that are no image raise BadInputError."""
    with pytest.raises(BadInputError, match="not an image"):
        frames.to_array(b"GIF89a but not really")


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_sniff_content_type_names_formats(fmt: str, content_type: str) -> None:
    """Each format is named from its magic bytes."""
    data = encode(Image.new("RGB", (4, 4)), fmt)
    assert frames.sniff_content_type(data) == content_type


def test_sniff_content_type_falls_back_to_octet_stream() -> None:
    """Unknown and empty bytes are application/octet-stream."""
    assert frames.sniff_content_type(b"") == "application/octet-stream"
    assert frames.sniff_content_type(b"RIFF\0\0\0\0WAVE") == "application/octet-stream"


def test_to_data_uri_builds_a_base64_uri() -> None:
    """to_data_uri gives the form browsers and to_model_jpeg accept."""
    assert (
        frames.to_data_uri(b"\x89PNG", "image/png") == "data:image/png;base64,iVBORw=="
    )


@pytest.mark.parametrize(
    ("image", "blank"),
    [
        (np.full((800, 800, 4), 255, np.uint8), True),
        (np.zeros((800, 800, 4), np.uint8), True),
        (np.full((64, 64, 3), 255, np.uint8), True),
        (np.full((64, 64), 252, np.uint8), True),
        (Image.new("RGBA", (64, 64), (0, 0, 0, 0)), True),
        (encode(Image.new("RGB", (64, 64), WHITE), "JPEG"), True),
        (np.zeros((64, 64, 3), np.uint8), False),
        (Image.new("L", (64, 64), 200), False),
    ],
)
def test_is_blank_tells_empty_canvases(image: Any, blank: bool) -> None:
    """White and fully transparent images are blank; others are not."""
    assert frames.is_blank(image) is blank


def test_is_blank_sees_one_stroke() -> None:
    """A single dark pixel, opaque or on a transparent layer, is not blank."""
    composite = np.full((800, 800, 4), 255, np.uint8)
    composite[400, 400, :3] = 0
    assert not frames.is_blank(composite)
    layer = np.zeros((800, 800, 4), np.uint8)
    layer[10, 10] = (0, 0, 0, 255)
    assert not frames.is_blank(layer)
    layer[10, 10] = (255, 255, 255, 255)
    assert frames.is_blank(layer)


def test_to_model_jpeg_refuses_a_truncated_pil_image() -> None:
    """A lazily opened PIL image whose data is cut off raises BadInputError."""
    noisy = np.random.default_rng(2).integers(0, 256, (64, 64, 3), np.uint8)
    data = encode(Image.fromarray(noisy), "PNG")
    with pytest.raises(BadInputError, match="damaged or truncated"):
        frames.to_model_jpeg(Image.open(io.BytesIO(data[: len(data) // 2])))
