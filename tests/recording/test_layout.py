"""Layout geometry of the mixed-stream templates: pure data, no media."""

from __future__ import annotations

import itertools

import pytest

from emberrtc.domain.errors import InvalidParameterCombination
from emberrtc.recording.layout import (
    CAMERA,
    CROP,
    PAD,
    SCREEN,
    Layout,
    Participant,
    Tile,
    compute_layout,
    grid_shape,
    layout_params,
)

COUNTS = (1, 2, 4, 9, 17, 25)
CANVASES = ((1920, 1080), (1280, 720), (640, 480), (480, 360))
NINE = layout_params({"layout_template": "nine_grids_view"})


def people(n: int, *, start: int = 0, camera: bool = True) -> list[Participant]:
    return [Participant(f"u{i:02d}", i, camera, False) for i in range(start, start + n)]


def check_inside(layout: Layout) -> None:
    for t in layout.tiles:
        assert t.width > 0 and t.height > 0
        assert 0 <= t.x and t.x + t.width <= layout.width
        assert 0 <= t.y and t.y + t.height <= layout.height
        assert t.x % 2 == t.y % 2 == t.width % 2 == t.height % 2 == 0, t


def overlaps(a: Tile, b: Tile) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def check_no_overlap(tiles: tuple[Tile, ...] | list[Tile]) -> None:
    for a, b in itertools.combinations(tiles, 2):
        assert not overlaps(a, b), (a, b)


# --- nine_grids_view ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", CANVASES)
@pytest.mark.parametrize("n", COUNTS)
def test_nine_grids_tiles_every_user_inside_the_canvas_without_overlap(n: int, width: int, height: int) -> None:
    layout = compute_layout(NINE, people(n), width, height)
    assert len(layout.tiles) == n
    check_inside(layout)
    check_no_overlap(layout.tiles)
    cols, rows = grid_shape(n)
    assert cols * rows >= n
    assert all(abs(t.width - width / cols) <= 2 and abs(t.height - height / rows) <= 2 for t in layout.tiles)
    # Join order: row by row, left to right.
    order = sorted(layout.tiles, key=lambda t: (t.y, t.x))
    assert [t.source for t in order] == [(f"u{i:02d}", CAMERA) for i in range(n)]
    assert all(t.fit == CROP for t in layout.tiles)


def test_nine_grids_shape_by_user_count() -> None:
    expected = {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (2, 2), 5: (3, 2), 6: (3, 2), 7: (3, 3), 9: (3, 3)}
    expected |= {10: (4, 4), 16: (4, 4), 17: (5, 5), 25: (5, 5)}
    for n, shape in expected.items():
        assert grid_shape(n) == shape
        layout = compute_layout(NINE, people(n), 1280, 720)
        assert len({t.x for t in layout.tiles}) == min(n, shape[0])
        assert len({t.y for t in layout.tiles}) == -(-n // shape[0])


def test_nine_grids_full_grid_covers_the_canvas() -> None:
    for n in (1, 2, 4, 6, 9, 16, 25):
        layout = compute_layout(NINE, people(n), 1280, 720)
        assert sum(t.width * t.height for t in layout.tiles) == 1280 * 720


def test_nine_grids_at_most_25_users_first_joined_first() -> None:
    layout = compute_layout(NINE, list(reversed(people(30))), 1280, 720)
    assert len(layout.tiles) == 25
    assert {t.user_id for t in layout.tiles} == {f"u{i:02d}" for i in range(25)}


def test_nine_grids_a_leaving_users_tile_goes_to_the_next_joiner() -> None:
    first = compute_layout(NINE, people(9), 1280, 720)
    where = {t.user_id: (t.x, t.y) for t in first.tiles}
    left = [p for p in people(9) if p.user_id != "u04"]
    after_leave = compute_layout(NINE, left, 1280, 720, previous=first)
    assert "u04" not in {t.user_id for t in after_leave.tiles}
    assert {t.user_id: (t.x, t.y) for t in after_leave.tiles} == {u: xy for u, xy in where.items() if u != "u04"}
    joined = compute_layout(NINE, [*left, Participant("new", 99, True, False)], 1280, 720, previous=after_leave)
    moved = {t.user_id: (t.x, t.y) for t in joined.tiles}
    assert moved["new"] == where["u04"]
    assert {u: xy for u, xy in moved.items() if u != "new"} == {u: xy for u, xy in where.items() if u != "u04"}


def test_nine_grids_holes_close_when_the_grid_shrinks() -> None:
    first = compute_layout(NINE, people(5), 1280, 720)
    four = [p for p in people(5) if p.user_id != "u01"]
    layout = compute_layout(NINE, four, 1280, 720, previous=first)
    assert grid_shape(4) == (2, 2)
    assert layout.slots == ("u00", "u02", "u03", "u04")
    assert {t.width for t in layout.tiles} == {640}
    check_no_overlap(layout.tiles)


def test_nine_grids_audio_only_users_hold_a_tile() -> None:
    group = [*people(2), Participant("quiet", 5, False, False), Participant("sharer", 6, False, True)]
    layout = compute_layout(NINE, group, 1280, 720)
    assert len(layout.tiles) == 4
    by_user = {t.user_id: t for t in layout.tiles}
    assert by_user["quiet"].source is None
    assert by_user["sharer"].source == ("sharer", SCREEN)
    assert compute_layout(NINE, [], 1280, 720).tiles == ()


# --- screen sharing ----------------------------------------------------------------------------------------


def share(template: str, panes: list[dict[str, object]] | None = None) -> object:
    return layout_params({"layout_template": template, "layout_panes": panes or []})


@pytest.mark.parametrize("template", ["screen_share_left", "screen_share_right"])
@pytest.mark.parametrize("n", COUNTS)
def test_screen_share_main_pane_and_small_tiles(template: str, n: int) -> None:
    group = [Participant("presenter", 0, True, True), *people(n - 1, start=1)]
    params = layout_params({"layout_template": template, "layout_panes": [{"filling_policy": "SHARED_SCREEN"}]})
    layout = compute_layout(params, group, 1280, 720)
    check_inside(layout)
    check_no_overlap(layout.tiles)
    main, *small = layout.tiles
    assert main.main and main.source == ("presenter", SCREEN) and main.fit == PAD
    assert len(small) == min(n, 16)  # the presenter's camera is a small tile too
    assert all(t.fit == CROP for t in small)
    assert [t.user_id for t in sorted(small, key=lambda t: (t.y, t.x))] == [p.user_id for p in group[:16]]
    if template == "screen_share_left":
        assert main.x == 0 and all(t.x >= main.width for t in small)
    else:
        assert main.x + main.width == 1280 and all(t.x + t.width <= main.x for t in small)
    assert main.height == 720 and main.width == 1280 - 320


def test_screen_share_nobody_to_show_is_background() -> None:
    layout = compute_layout(share("screen_share_left"), [], 1280, 720)
    assert layout.tiles == (Tile(0, 0, 1280, 720, 0, None, None, PAD, main=True),)
    layout = compute_layout(share("screen_share_left"), people(2), 1280, 720)
    assert layout.tiles[0].source is None and len(layout.tiles) == 3


def test_screen_share_fixed_user_on_the_main_pane() -> None:
    panes = [{"filling_policy": "FIXED_USER", "user_id": "u02"}]
    group = [*people(4), Participant("sharer", 9, True, True)]
    layout = compute_layout(share("screen_share_right", panes), group, 1280, 720)
    main, *small = layout.tiles
    assert main.source == ("u02", CAMERA)
    assert "u02" not in {t.user_id for t in small}  # already the main picture
    assert len(small) == 4
    # The fixed user not in the room: the main pane shows the background, not the sharer.
    layout = compute_layout(share("screen_share_right", panes), [p for p in group if p.user_id != "u02"], 1280, 720)
    assert layout.tiles[0].source is None
    screen_pane = [{"filling_policy": "FIXED_USER", "user_id": "sharer", "video_type": "SCREENSTREAM"}]
    layout = compute_layout(share("screen_share_left", screen_pane), group, 1280, 720)
    assert layout.tiles[0].source == ("sharer", SCREEN)


def test_screen_share_small_tiles_are_sticky() -> None:
    params = share("screen_share_left")
    first = compute_layout(params, people(6), 1280, 720)
    where = {t.user_id: (t.x, t.y) for t in first.tiles[1:]}
    after = compute_layout(params, [p for p in people(6) if p.user_id != "u01"], 1280, 720, previous=first)
    joined = compute_layout(
        params,
        [*[p for p in people(6) if p.user_id != "u01"], Participant("late", 50, False, False)],
        1280,
        720,
        previous=after,
    )
    got = {t.user_id: (t.x, t.y) for t in joined.tiles[1:]}
    assert got["late"] == where["u01"]
    assert joined.tiles[1 + joined.slots.index("late")].source is None  # audio only, holds a tile


# --- custom ------------------------------------------------------------------------------------------------


def test_custom_panes_by_zorder_with_both_crop_modes() -> None:
    panes = [
        {
            "user_id": "top",
            "x": 0.5,
            "y": 0.5,
            "width": 0.25,
            "height": 0.25,
            "zorder": 2,
            "crop_mode": "KEEP_RATIO_PADDING",
        },
        {"user_id": "bottom", "x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0, "zorder": 0},
        {
            "user_id": "shared",
            "video_type": "SCREENSTREAM",
            "x": 0.1,
            "y": 0.1,
            "width": 0.3,
            "height": 0.3,
            "zorder": 1,
            "crop_mode": "KEEP_RATIO_CROP",
        },
    ]
    group = [
        Participant("bottom", 0, True, False),
        Participant("top", 1, True, False),
        Participant("shared", 2, False, True),
    ]
    layout = compute_layout(layout_params({"layout_template": "custom", "layout_panes": panes}), group, 1280, 720)
    check_inside(layout)
    assert [t.user_id for t in layout.tiles] == ["bottom", "shared", "top"]
    bottom, shared, top = layout.tiles
    assert (bottom.x, bottom.y, bottom.width, bottom.height, bottom.fit) == (0, 0, 1280, 720, CROP)
    assert (top.x, top.y, top.width, top.height, top.fit) == (640, 360, 320, 180, PAD)
    assert shared.source == ("shared", SCREEN) and shared.fit == CROP
    assert (shared.x, shared.y) == (128, 72)


def test_custom_pane_of_an_absent_user_keeps_its_place_without_a_source() -> None:
    panes = [
        {"user_id": "away", "x": 0.0, "y": 0.0, "width": 0.5, "height": 0.5},
        {"user_id": "cam", "video_type": "SCREENSTREAM", "x": 0.5, "y": 0.0, "width": 0.5, "height": 0.5},
    ]
    layout = compute_layout(
        layout_params({"layout_template": "custom", "layout_panes": panes}),
        [Participant("cam", 0, True, False)],
        1280,
        720,
    )
    assert [(t.user_id, t.source) for t in layout.tiles] == [("away", None), ("cam", None)]


def test_custom_adjacent_panes_meet_exactly() -> None:
    third = 1 / 3
    panes = [{"user_id": f"u{i}", "x": i * third, "y": 0.0, "width": third, "height": 1.0} for i in range(3)]
    group = [Participant(f"u{i}", i, True, False) for i in range(3)]
    layout = compute_layout(layout_params({"layout_template": "custom", "layout_panes": panes}), group, 1280, 720)
    check_inside(layout)
    check_no_overlap(layout.tiles)
    assert sum(t.width for t in layout.tiles) == 1280


def test_layout_params_rejects_what_it_cannot_draw() -> None:
    with pytest.raises(InvalidParameterCombination):
        layout_params({"layout_template": "mosaic"})
    with pytest.raises(InvalidParameterCombination):
        layout_params({"layout_template": "custom", "layout_panes": [{"user_id": "a", "crop_mode": "STRETCH"}]})
    with pytest.raises(ValueError):
        compute_layout(NINE, people(1), 641, 360)


def test_nine_grids_the_26th_user_takes_the_tile_of_one_who_leaves() -> None:
    everyone = people(26)
    full = compute_layout(NINE, everyone, 1280, 720)
    assert "u25" not in {t.user_id for t in full.tiles}
    where = {t.user_id: (t.x, t.y) for t in full.tiles}
    after = compute_layout(NINE, [p for p in everyone if p.user_id != "u03"], 1280, 720, previous=full)
    got = {t.user_id: (t.x, t.y) for t in after.tiles}
    assert got["u25"] == where["u03"]
    assert all(got[u] == xy for u, xy in where.items() if u != "u03")
