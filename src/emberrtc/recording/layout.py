"""Mixed-stream layout geometry (spec 4.8.1 Table 4-175/4-176 and the layout notes of the 2025 example).

Pure data, no media: :func:`compute_layout` turns the job's layout parameters and the room's
participants into tiles in canvas pixels, which :class:`emberrtc.recording.compositor.Compositor`
paints. Every position and size is even (yuv420p chroma is subsampled by two in both directions).

Templates (the pictures are in docs/mix-layouts.md, rendered from this module):

- ``nine_grids_view``: equal tiles on a grid chosen by the number of users (1: 1x1, 2: 2x1, 3-4: 2x2,
  5-6: 3x2, 7-9: 3x3, 10-16: 4x4, 17-25: 5x5), at most 25, in join order. A leaving user's tile is
  kept empty and given to the next user who joins (stickiness, through ``previous``) until the grid
  shrinks. Users with audio only hold a tile. Pictures are cropped to fill their tile.
- ``screen_share_left`` / ``screen_share_right``: a main pane on that side showing the shared screen
  (or, with a ``FIXED_USER`` pane, that user's stream), zoomed to fit whole; beside it a strip a quarter
  of the canvas wide with up to 16 small tiles in join order (1-4: one column of four, 5-16: two
  columns of eight), cropped. With no small tile the main pane takes the whole canvas.
- ``custom``: one tile per pane at its normalised x, y, width, height, painted by ``zorder`` (0 at the
  bottom), cropped or padded by ``crop_mode``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emberrtc.domain.errors import InvalidParameterCombination

NINE_GRIDS = "nine_grids_view"
SCREEN_LEFT = "screen_share_left"
SCREEN_RIGHT = "screen_share_right"
CUSTOM = "custom"
TEMPLATES = (NINE_GRIDS, SCREEN_LEFT, SCREEN_RIGHT, CUSTOM)

CAMERA = "camera"
SCREEN = "screen"
CROP = "crop"  # KEEP_RATIO_CROP: fill the tile, cut what overflows
PAD = "pad"  # KEEP_RATIO_PADDING: the whole picture, bars where it does not fill

MAX_GRID_USERS = 25  # spec 4.8.1 example: "A maximum of 25 images are supported"
MAX_SMALL_TILES = 16  # spec 4.8.1 example: "A maximum of 17 screens are supported" (main + 16)

_VIDEO_TYPES = {"CAMERASTREAM": CAMERA, "SCREENSTREAM": SCREEN}
_CROP_MODES = {"KEEP_RATIO_CROP": CROP, "KEEP_RATIO_PADDING": PAD}
# (columns, rows) by number of users: 1, 2, 3-4, 5-6, 7-9, 10-16, 17-25
_GRIDS = ((1, 1, 1), (2, 2, 1), (4, 2, 2), (6, 3, 2), (9, 3, 3), (16, 4, 4), (25, 5, 5))


@dataclass(frozen=True)
class Participant:
    """A user in the room as the layout sees it."""

    user_id: str
    order: int  # join order in the room (smaller joined earlier)
    camera: bool  # publishes a camera video stream now
    screen: bool  # publishes a screen video stream now


@dataclass(frozen=True)
class Tile:
    """One rectangle of the canvas, in pixels (even), and what it shows."""

    x: int
    y: int
    width: int
    height: int
    zorder: int  # 0 at the bottom
    source: tuple[str, str] | None  # (user_id, "camera" | "screen"); None: background only
    user_id: str | None  # whose user background image applies when the source shows nothing
    fit: str  # "crop" (KEEP_RATIO_CROP, fill the tile) | "pad" (KEEP_RATIO_PADDING, whole picture)
    #: The screen-share main pane: ``screen_background_image`` fills it under the (padded) picture.
    main: bool = False


@dataclass(frozen=True)
class Layout:
    """The tiles of one canvas, in paint order (zorder ascending)."""

    width: int
    height: int
    tiles: tuple[Tile, ...]
    #: User id per tile slot, for stickiness: nine_grids_view's grid cells, the screen-share small tiles.
    slots: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Pane:
    """A ``layout_panes`` entry (Table 4-176), normalised."""

    user_id: str | None
    video_type: str  # "camera" | "screen"
    x: float
    y: float
    width: float
    height: float
    zorder: int
    fit: str
    filling_policy: str | None  # "FIXED_USER" | "SHARED_SCREEN" | None


@dataclass(frozen=True)
class LayoutParams:
    template: str
    panes: tuple[Pane, ...] = ()


def layout_params(mix_params: Mapping[str, Any]) -> LayoutParams:
    """The layout part of a job's stored mix parameters (API field names, Table 4-175)."""
    template = mix_params.get("layout_template")
    if template not in TEMPLATES:
        raise InvalidParameterCombination(f"layout_template must be one of {', '.join(TEMPLATES)}, not {template!r}")
    panes: list[Pane] = []
    for raw in mix_params.get("layout_panes") or ():
        video_type = raw.get("video_type") or "CAMERASTREAM"
        crop_mode = raw.get("crop_mode") or "KEEP_RATIO_CROP"
        if video_type not in _VIDEO_TYPES or crop_mode not in _CROP_MODES:
            raise InvalidParameterCombination(f"layout pane: unknown video_type or crop_mode in {raw!r}")
        panes.append(
            Pane(
                user_id=raw.get("user_id") or None,
                video_type=_VIDEO_TYPES[video_type],
                x=_unit(raw.get("x")),
                y=_unit(raw.get("y")),
                width=_unit(raw.get("width")),
                height=_unit(raw.get("height")),
                zorder=int(raw.get("zorder") or 0),
                fit=_CROP_MODES[crop_mode],
                filling_policy=raw.get("filling_policy"),
            )
        )
    return LayoutParams(template, tuple(panes))


def _unit(value: Any) -> float:
    if value is None:
        return 0.0
    v = float(value)
    if not math.isfinite(v):
        raise InvalidParameterCombination("layout pane coordinates must be finite numbers")
    return min(1.0, max(0.0, v))


def compute_layout(
    params: LayoutParams,
    participants: Sequence[Participant],
    width: int,
    height: int,
    previous: Layout | None = None,
) -> Layout:
    """The tiles for ``participants`` on a ``width`` x ``height`` canvas.

    ``previous`` (the layout in force) keeps users in their tiles: a leaving user's tile waits for the
    next user who joins.
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"canvas {width}x{height}: sizes must be positive and even")
    people = sorted(participants, key=lambda p: (p.order, p.user_id))
    if params.template == NINE_GRIDS:
        return _nine_grids(people, width, height, previous)
    if params.template in (SCREEN_LEFT, SCREEN_RIGHT):
        return _screen_share(params, people, width, height, previous)
    if params.template == CUSTOM:
        return _custom(params, people, width, height)
    raise ValueError(f"unknown layout template {params.template!r}")


def grid_shape(users: int) -> tuple[int, int]:
    """(columns, rows) of nine_grids_view for ``users`` users (1..25)."""
    for most, cols, rows in _GRIDS:
        if users <= most:
            return cols, rows
    return 5, 5


def _even(v: float) -> int:
    return int(v) & ~1


def _edge(v: float) -> int:
    """The even number nearest ``v`` (>= 0)."""
    return int(v + 1) & ~1


def _cells(x0: int, y0: int, width: int, height: int, cols: int, rows: int) -> list[tuple[int, int, int, int]]:
    """Row-major cells that tile the rectangle exactly (even edges, no gaps, no overlap)."""
    xs = [x0 + _even(width * i / cols) for i in range(cols)] + [x0 + width]
    ys = [y0 + _even(height * j / rows) for j in range(rows)] + [y0 + height]
    return [(xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j]) for j in range(rows) for i in range(cols)]


def _sticky(users: Sequence[str], previous: Sequence[str | None], capacity: int) -> list[str | None]:
    """Slots for ``users`` (in join order): everyone keeps their slot, newcomers take the first free ones.

    When the kept slots no longer fit ``capacity`` (the grid shrank) the holes close up, order kept.
    """
    present = set(users)
    slots: list[str | None] = [u if u in present else None for u in previous]
    placed = {u for u in slots if u is not None}
    for user in users:
        if user in placed:
            continue
        if None in slots:
            slots[slots.index(None)] = user
        else:
            slots.append(user)
        placed.add(user)
    while slots and slots[-1] is None:
        slots.pop()
    if len(slots) > capacity:
        slots = [u for u in slots if u is not None]
    return slots


def _user_tile(cell: tuple[int, int, int, int], p: Participant, fit: str, screen: bool = True) -> Tile:
    # A user without a camera (audio only, or sharing a screen only) still holds the tile; it shows the
    # screen if that is all they send (and ``screen`` allows), else their background image or the canvas.
    if p.camera:
        source: tuple[str, str] | None = (p.user_id, CAMERA)
    elif p.screen and screen:
        source = (p.user_id, SCREEN)
    else:
        source = None
    return Tile(*cell, zorder=0, source=source, user_id=p.user_id, fit=fit)


def _nine_grids(people: Sequence[Participant], width: int, height: int, previous: Layout | None) -> Layout:
    people = people[:MAX_GRID_USERS]
    by_id = {p.user_id: p for p in people}
    prev = previous.slots if previous is not None else ()
    capacity = grid_shape(len(people))[0] * grid_shape(len(people))[1] if people else 0
    slots = _sticky([p.user_id for p in people], prev, capacity)
    if not slots:
        return Layout(width, height, (), ())
    cols, rows = grid_shape(len(slots))
    cells = _cells(0, 0, width, height, cols, rows)
    tiles = tuple(_user_tile(cells[i], by_id[u], CROP) for i, u in enumerate(slots) if u is not None)
    return Layout(width, height, tiles, tuple(slots))


def _main_source(params: LayoutParams, people: Sequence[Participant]) -> tuple[str, str] | None:
    """What the main pane shows: the FIXED_USER pane's stream, else the first shared screen."""
    by_id = {p.user_id: p for p in people}
    fixed = next((p for p in params.panes if p.filling_policy == "FIXED_USER" and p.user_id), None)
    if fixed is not None:
        assert fixed.user_id is not None
        who = by_id.get(fixed.user_id)
        if who is None:
            return None  # the named user is not in the room: background (spec 4.8.1 example)
        publishing = who.screen if fixed.video_type == SCREEN else who.camera
        return (who.user_id, fixed.video_type) if publishing else None
    sharer = next((p for p in people if p.screen), None)
    return (sharer.user_id, SCREEN) if sharer is not None else None


def _screen_share(
    params: LayoutParams, people: Sequence[Participant], width: int, height: int, previous: Layout | None
) -> Layout:
    main = _main_source(params, people)
    # Everyone holds a small tile, except a user whose camera is already the main picture.
    small = [p for p in people if main != (p.user_id, CAMERA)][:MAX_SMALL_TILES]
    by_id = {p.user_id: p for p in small}
    prev = previous.slots if previous is not None else ()
    slots = _sticky([p.user_id for p in small], prev, 4 if len(small) <= 4 else MAX_SMALL_TILES)
    main_user = main[0] if main is not None else None
    if not slots:
        return Layout(width, height, (Tile(0, 0, width, height, 0, main, main_user, PAD, main=True),), ())
    strip = _even(width / 4)
    left = params.template == SCREEN_LEFT
    main_x, strip_x = (0, width - strip) if left else (strip, 0)
    main_tile = Tile(main_x, 0, width - strip, height, 0, main, main_user, PAD, main=True)
    cols, rows = (1, 4) if len(slots) <= 4 else (2, 8)
    cells = _cells(strip_x, 0, strip, height, cols, rows)
    # Small tiles show cameras: a shared screen belongs on the main pane, not twice on the canvas.
    tiles = [_user_tile(cells[i], by_id[u], CROP, screen=False) for i, u in enumerate(slots) if u is not None]
    return Layout(width, height, (main_tile, *tiles), tuple(slots))


def _custom(params: LayoutParams, people: Sequence[Participant], width: int, height: int) -> Layout:
    by_id = {p.user_id: p for p in people}
    tiles: list[Tile] = []
    for pane in params.panes:
        # Edges rounded (not sizes), so panes that meet in the parameters meet on the canvas.
        x, y = _edge(pane.x * width), _edge(pane.y * height)
        w = min(width, _edge((pane.x + pane.width) * width)) - x
        h = min(height, _edge((pane.y + pane.height) * height)) - y
        if w <= 0 or h <= 0 or pane.user_id is None:
            continue
        who = by_id.get(pane.user_id)
        publishing = who is not None and (who.screen if pane.video_type == SCREEN else who.camera)
        source = (pane.user_id, pane.video_type) if publishing else None
        tiles.append(Tile(x, y, w, h, pane.zorder, source, pane.user_id, pane.fit))
    tiles.sort(key=lambda t: t.zorder)  # stable: equal zorders paint in pane order
    return Layout(width, height, tuple(tiles), ())
