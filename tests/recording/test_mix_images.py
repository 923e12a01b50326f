"""Decoding the mixed-stream images: PNG and JPEG in, pictures out, anything else a clear ValueError."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction

import av
import numpy as np
import pytest

from emberrtc.recording.compositor import Compositor
from emberrtc.recording.mix_images import MixImages, decode_image
from emberrtc.synthetic import colour_distance


def encode_image(rgb: np.ndarray, kind: str = "png") -> bytes:
    """An RGB array (h, w, 3) as PNG or JPEG bytes, encoded by FFmpeg."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
    codec = av.CodecContext.create("png" if kind == "png" else "mjpeg", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height = frame.width, frame.height
    codec.time_base = Fraction(1, 25)
    if kind == "png":
        codec.pix_fmt = "rgb24"
    else:
        codec.pix_fmt = "yuvj420p"
        frame = frame.reformat(format="yuvj420p")
        codec.qmin = codec.qmax = 2
    codec.open()
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


def solid(width: int, height: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.full((height, width, 3), rgb, np.uint8)


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_png_and_jpeg_decode_to_their_picture(kind: str) -> None:
    image = solid(120, 80, (200, 40, 40))
    image[:, 60:] = (40, 40, 200)
    frame = decode_image(encode_image(image, kind))
    assert (frame.width, frame.height) == (120, 80)
    rgb = frame.to_ndarray(format="rgb24")
    assert colour_distance(rgb[40, 20], (200, 40, 40)) < 15
    assert colour_distance(rgb[40, 100], (40, 40, 200)) < 15


@pytest.mark.parametrize("size", [(33, 17), (1, 1)])
def test_odd_sized_images_decode_and_fill_a_canvas(size: tuple[int, int]) -> None:
    frame = decode_image(encode_image(solid(*size, (10, 200, 10))))
    assert (frame.width, frame.height) == size
    compositor = Compositor(64, 36)
    compositor.set_images(MixImages(background=frame))
    assert colour_distance(compositor.compose().to_ndarray(format="rgb24")[18, 32], (10, 200, 10)) < 15


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a....", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"\xff\xd8\xff" + b"garbage" * 10],
    ids=["empty", "gif", "truncated-png", "broken-jpeg"],
)
def test_unreadable_bytes_are_a_clear_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="background image"):
        decode_image(data)


def test_user_image_before_default() -> None:
    own = decode_image(encode_image(solid(4, 4, (255, 0, 0))))
    default = decode_image(encode_image(solid(4, 4, (0, 0, 255))))
    images = MixImages(default_user=default, users={"a": own})
    assert images.for_user("a") is own
    assert images.for_user("b") is default
    assert images.for_user(None) is default
    assert MixImages().for_user("a") is None


def test_huge_pictures_are_refused_from_the_header() -> None:
    # A tiny PNG that claims 100000 x 100000 pixels: refused before any decoding.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    with pytest.raises(ValueError, match="100000x100000"):
        decode_image(png)
    # The same for a JPEG: patch the size in a real file's SOF0 segment.
    jpeg = bytearray(encode_image(solid(16, 8, (10, 10, 10)), "jpeg"))
    sof = jpeg.index(b"\xff\xc0")
    assert jpeg[sof + 5 : sof + 9] == bytes([0, 8, 0, 16])
    jpeg[sof + 5 : sof + 9] = bytes([0xFF, 0xFF, 0xFF, 0xFF])
    with pytest.raises(ValueError, match="65535x65535"):
        decode_image(bytes(jpeg))
