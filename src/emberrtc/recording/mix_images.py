"""The images of a mixed-stream job (spec 4.8.1 Table 4-175/4-177): decoded once, placed by the compositor.

``background_image`` fills the canvas, ``default_user_background_image`` and ``user_background_images``
(per user, higher priority) fill the tile of a user who shows no picture, ``screen_background_image``
fills the screen-share main pane. All are scaled and cropped proportionally ("proportional scaling and
cropping is used to ensure full display"). The worker fetches the bytes through storage; this module
only decodes them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import av

#: Largest image side accepted: a canvas is at most 1920x1080, and a bigger image costs memory for nothing.
MAX_SIDE = 8192
_FORMATS = {b"\x89PNG\r\n\x1a\n": "png_pipe", b"\xff\xd8\xff": "jpeg_pipe"}


@dataclass
class MixImages:
    """Decoded images of one job; ``None`` where the job has none."""

    background: av.VideoFrame | None = None
    default_user: av.VideoFrame | None = None
    screen: av.VideoFrame | None = None
    users: dict[str, av.VideoFrame] = field(default_factory=dict)

    def for_user(self, user_id: str | None) -> av.VideoFrame | None:
        """The user's own image, else the default user image."""
        if user_id is not None and user_id in self.users:
            return self.users[user_id]
        return self.default_user


def decode_image(data: bytes) -> av.VideoFrame:
    """PNG or JPEG bytes -> one picture. Raises :class:`ValueError` with a clear message otherwise."""
    fmt = next((name for magic, name in _FORMATS.items() if data.startswith(magic)), None)
    if fmt is None:
        raise ValueError("background image is neither PNG nor JPEG")
    # The size is checked in the header first: a small file can claim a huge picture (a decompression bomb).
    size = _png_size(data) if fmt == "png_pipe" else _jpeg_size(data)
    if size is not None and not all(1 <= side <= MAX_SIDE for side in size):
        raise ValueError(f"background image is {size[0]}x{size[1]}: sides must be 1..{MAX_SIDE} pixels")
    try:
        with av.open(io.BytesIO(data), "r", format=fmt) as container:
            frame = next(container.decode(video=0), None)
    except (av.FFmpegError, StopIteration, IndexError) as exc:
        raise ValueError(f"background image cannot be decoded: {exc}") from exc
    if frame is None:
        raise ValueError("background image holds no picture")
    if not (1 <= frame.width <= MAX_SIDE and 1 <= frame.height <= MAX_SIDE):
        raise ValueError(f"background image is {frame.width}x{frame.height}: sides must be 1..{MAX_SIDE} pixels")
    return frame


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the IHDR chunk, which must come first (PNG spec 5.6)."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first SOFn segment (ITU T.81 B.2.2)."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    return None
