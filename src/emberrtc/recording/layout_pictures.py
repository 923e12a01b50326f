"""Pictures of the mixed-stream layouts for docs/mix-layouts.md, drawn by the compositor itself.

Each participant is a solid colour with their join number on it (a 16:9 camera picture); a shared
screen is a 16:10 slate "desktop" with two windows on it. The pictures go through :func:`compute_layout` and
:class:`Compositor` exactly as a recording's would, so the documentation cannot drift from the code
(``tests/recording/test_layout_pictures.py`` re-renders them and compares).

    python -m emberrtc.recording.layout_pictures [docs/layouts]
"""

from __future__ import annotations

import colorsys
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from emberrtc.recording.compositor import Compositor
from emberrtc.recording.layout import CAMERA, SCREEN, Layout, Participant, compute_layout, layout_params
from emberrtc.recording.mix_images import MixImages

WIDTH, HEIGHT = 640, 360  # pictures at half of 1280x720: the same geometry, smaller files
BACKGROUND = (40, 40, 48)

# 3x5 digits, one string per row
_GLYPHS = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", "..#", "..#", "..#"),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
}


@dataclass(frozen=True)
class Scene:
    """One picture: a template, who is in the room, and the layout parameters."""

    name: str
    template: str
    participants: tuple[Participant, ...]
    panes: tuple[Mapping[str, object], ...] = ()
    #: users who were in the room before (their leaving shows how tiles stay in place)
    before: tuple[Participant, ...] = field(default=())
    #: give the job a default_user_background_image (a silhouette) for users without a picture
    user_image: bool = False


def _people(n: int, *, sharer: bool = False, audio_only: tuple[int, ...] = ()) -> tuple[Participant, ...]:
    return tuple(Participant(f"user{i}", i, i not in audio_only, sharer and i == 1) for i in range(1, n + 1))


def scenes() -> list[Scene]:
    """Every picture of docs/mix-layouts.md."""
    out = [
        Scene(f"nine_grids_view-{n:02d}", "nine_grids_view", _people(n))
        for n in (1, 2, 3, 4, 5, 6, 7, 9, 10, 16, 17, 25)
    ]
    nine = _people(9)
    out.append(Scene("nine_grids_view-09-left", "nine_grids_view", tuple(p for p in nine if p.order != 5), before=nine))
    out.append(Scene("nine_grids_view-04-audio-only", "nine_grids_view", _people(4, audio_only=(3,)), user_image=True))
    for template in ("screen_share_left", "screen_share_right"):
        panes = ({"filling_policy": "SHARED_SCREEN"},)
        out.append(Scene(f"{template}-00", template, (), panes))
        for n in (1, 2, 4, 5, 9, 17):
            out.append(Scene(f"{template}-{n:02d}", template, _people(n, sharer=True), panes))
    out.append(Scene("screen_share_left-fixed-user", "screen_share_left", _people(5, sharer=True),
                     ({"filling_policy": "FIXED_USER", "user_id": "user3"},)))  # fmt: skip
    custom = (
        {"user_id": "user1", "x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0, "zorder": 0},
        {"user_id": "user2", "x": 0.70, "y": 0.05, "width": 0.25, "height": 0.25, "zorder": 2},
        {"user_id": "user3", "x": 0.05, "y": 0.50, "width": 0.30, "height": 0.45, "zorder": 1,
         "crop_mode": "KEEP_RATIO_PADDING"},
        {"user_id": "user4", "x": 0.55, "y": 0.55, "width": 0.20, "height": 0.40, "zorder": 1,
         "crop_mode": "KEEP_RATIO_CROP"},
    )  # fmt: skip
    out.append(Scene("custom", "custom", _people(4), custom))
    return out


def colour(order: int) -> tuple[int, int, int]:
    """A distinct, saturated colour per join number."""
    r, g, b = colorsys.hsv_to_rgb((order * 0.381966) % 1.0, 0.65, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


def _labelled(width: int, height: int, rgb: tuple[int, int, int], text: str) -> av.VideoFrame:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rgb
    cell = height // 12
    glyph_w = 4 * cell
    x0 = (width - glyph_w * len(text)) // 2
    y0 = (height - 5 * cell) // 2
    for k, char in enumerate(text):
        for row, bits in enumerate(_GLYPHS[char]):
            for col, bit in enumerate(bits):
                if bit == "#":
                    x = x0 + k * glyph_w + col * cell
                    image[y0 + row * cell : y0 + (row + 1) * cell, x : x + cell] = 245
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def _silhouette(width: int, height: int) -> av.VideoFrame:
    """A default user image: a light head and shoulders on grey."""
    yy, xx = np.mgrid[0:height, 0:width]
    cx, s = width / 2, height / 10
    head = (xx - cx) ** 2 + (yy - 3.6 * s) ** 2 < (1.8 * s) ** 2
    body = ((xx - cx) / (3.6 * s)) ** 2 + ((yy - 9.5 * s) / (3.6 * s)) ** 2 < 1
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (96, 100, 108)
    image[head | body] = (170, 175, 182)
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def _desktop(width: int, height: int) -> av.VideoFrame:
    """A shared screen: a slate desktop with two light windows, each with a title bar."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (70, 80, 100)
    for x0, y0, x1, y1 in ((0.08, 0.10, 0.55, 0.70), (0.45, 0.35, 0.92, 0.90)):
        left, top, right, bottom = int(x0 * width), int(y0 * height), int(x1 * width), int(y1 * height)
        image[top:bottom, left:right] = (225, 228, 232)
        image[top : top + height // 20, left:right] = (60, 110, 200)
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def render(scene: Scene, width: int = WIDTH, height: int = HEIGHT) -> av.VideoFrame:
    """The scene's picture, composed by :class:`Compositor` from :func:`compute_layout`'s layout."""
    params = layout_params({"layout_template": scene.template, "layout_panes": list(scene.panes)})
    previous: Layout | None = None
    if scene.before:
        previous = compute_layout(params, scene.before, width, height)
    layout = compute_layout(params, scene.participants, width, height, previous)
    compositor = Compositor(width, height, BACKGROUND)
    compositor.set_layout(layout)
    if scene.user_image:
        compositor.set_images(MixImages(default_user=_silhouette(320, 180)))
    for p in scene.participants:
        if p.camera:
            compositor.update((p.user_id, CAMERA), _labelled(640, 360, colour(p.order), str(p.order)))
        if p.screen:
            compositor.update((p.user_id, SCREEN), _desktop(1280, 800))
    return compositor.compose()


def write(folder: Path) -> list[Path]:
    """Render every scene to ``folder/NAME.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for scene in scenes():
        path = folder / f"{scene.name}.png"
        path.write_bytes(png(render(scene)))
        written.append(path)
    return written


def png(frame: av.VideoFrame) -> bytes:
    rgb = frame.reformat(format="rgb24")
    codec = av.CodecContext.create("png", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = rgb.width, rgb.height, "rgb24"
    codec.options = {"pred": "mixed"}
    codec.open()
    return b"".join(bytes(p) for p in [*codec.encode(rgb), *codec.encode(None)])


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/layouts")
    for path in write(target):
        print(path)
