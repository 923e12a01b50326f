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
    try:
        with av.open(io.BytesIO(data), "r", format=fmt) as container:
            frame = next(container.decode(video=0), None)
    except (av.FFmpegError, StopIteration, IndexError) as exc:
        raise ValueError(f"background image cannot be decoded: {exc}") from exc
    if frame is None:
        raise ValueError("background image holds no picture")
    if not (2 <= frame.width <= MAX_SIDE and 2 <= frame.height <= MAX_SIDE):
        raise ValueError(f"background image is {frame.width}x{frame.height}: sides must be 2..{MAX_SIDE} pixels")
    return frame
