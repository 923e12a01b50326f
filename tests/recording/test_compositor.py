"""The compositor's canvases read back: each tile shows its input, crop and pad, images, dropped inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import av
import numpy as np
import pytest

from emberrtc.recording import compositor as compositor_module
from emberrtc.recording.compositor import Compositor, fit_size, planes_of
from emberrtc.recording.layout import CROP, PAD, Layout, Participant, Tile, compute_layout, layout_params
from emberrtc.recording.mix_images import MixImages, decode_image
from emberrtc.synthetic import COLOURS, ColourVideo, colour_distance
from tests.recording.test_mix_images import encode_image, solid

BACKGROUND = (20, 20, 20)
PALETTE = [c for name, c in COLOURS.items() if name not in ("gray", "black", "grey")]


def picture(width: int, height: int, rgb: tuple[int, int, int]) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(solid(width, height, rgb), format="rgb24")


def rgb_at(frame: av.VideoFrame, x: int, y: int) -> tuple[int, int, int]:
    r, g, b = frame.to_ndarray(format="rgb24")[y, x]
    return int(r), int(g), int(b)


def near(frame: av.VideoFrame, x: int, y: int, rgb: tuple[int, int, int], tolerance: float = 12) -> bool:
    return colour_distance(rgb_at(frame, x, y), rgb) < tolerance


def centre(tile: Tile) -> tuple[int, int]:
    return tile.x + tile.width // 2, tile.y + tile.height // 2


def single(tile: Tile, width: int = 1280, height: int = 720) -> Layout:
    return Layout(width, height, (tile,), ())


@pytest.mark.parametrize("n", [1, 2, 4, 9, 17, 25])
def test_each_tile_centre_has_its_inputs_colour(n: int) -> None:
    group = [Participant(f"u{i}", i, True, False) for i in range(n)]
    layout = compute_layout(layout_params({"layout_template": "nine_grids_view"}), group, 1280, 720)
    compositor = Compositor(1280, 720, BACKGROUND)
    compositor.set_layout(layout)
    colours = {p.user_id: PALETTE[i % len(PALETTE)] for i, p in enumerate(group)}
    for i, p in enumerate(group):
        # The synthetic source's marker moves; its median colour is the participant's.
        compositor.update((p.user_id, "camera"), ColourVideo(colours[p.user_id], width=640, height=360).frame(i))
    frame = compositor.compose()
    assert (frame.width, frame.height, frame.format.name) == (1280, 720, "yuv420p")
    for tile in layout.tiles:
        assert tile.user_id is not None
        assert near(frame, tile.x + tile.width // 2, tile.y + 4, colours[tile.user_id]), tile
        assert near(frame, tile.x + 2, tile.y + tile.height - 4, colours[tile.user_id]), tile
    empty = len(layout.tiles) < 25 and n in (17,)
    if empty:  # 17 users on a 5x5 grid: the last row is the background
        assert near(frame, 1278, 718, BACKGROUND)


def test_crop_fills_the_tile_pad_leaves_background_bars() -> None:
    wide = picture(640, 360, (220, 30, 30))
    square = Tile(400, 100, 400, 400, 0, ("a", "camera"), "a", CROP)
    compositor = Compositor(1280, 720, BACKGROUND)
    compositor.update(("a", "camera"), wide)
    compositor.set_layout(single(square))
    frame = compositor.compose()
    assert near(frame, 402, 102, (220, 30, 30)) and near(frame, 798, 498, (220, 30, 30))
    assert near(frame, 398, 300, BACKGROUND) and near(frame, 802, 300, BACKGROUND)  # nothing outside the tile
    compositor.set_layout(single(Tile(400, 100, 400, 400, 0, ("a", "camera"), "a", PAD)))
    frame = compositor.compose()
    # 16:9 in a square: 400x224 in the middle, bars of 88 rows above and below.
    assert near(frame, 600, 300, (220, 30, 30))
    assert near(frame, 600, 104, BACKGROUND) and near(frame, 600, 496, BACKGROUND)
    assert near(frame, 600, 100 + 88 + 4, (220, 30, 30)) and near(frame, 600, 100 + 88 + 224 - 4, (220, 30, 30))


def test_crop_keeps_the_centre_of_the_picture() -> None:
    stripes = solid(640, 360, (30, 60, 220))
    stripes[:, 280:360] = (230, 210, 40)  # a yellow band in the middle
    compositor = Compositor(640, 360, BACKGROUND)
    compositor.update(("a", "camera"), av.VideoFrame.from_ndarray(stripes, format="rgb24"))
    compositor.set_layout(single(Tile(0, 0, 180, 360, 0, ("a", "camera"), "a", CROP), 640, 360))
    frame = compositor.compose()
    # 640x360 cropped into 180x360: the middle 180 columns, yellow in the centre 80 of them.
    assert near(frame, 90, 180, (230, 210, 40))
    assert near(frame, 10, 180, (30, 60, 220)) and near(frame, 170, 180, (30, 60, 220))


@pytest.mark.parametrize("size", [(321, 179), (359, 641), (2, 2), (1921, 1081)])
def test_odd_and_portrait_inputs(size: tuple[int, int]) -> None:
    w, h = size
    compositor = Compositor(1280, 720, BACKGROUND)
    tiles = (
        Tile(0, 0, 640, 360, 0, ("a", "camera"), "a", CROP),
        Tile(640, 0, 640, 360, 0, ("a", "camera"), "a", PAD),
    )
    compositor.set_layout(Layout(1280, 720, tiles, ()))
    compositor.update(("a", "camera"), picture(w, h, (40, 200, 220)))
    frame = compositor.compose()
    assert near(frame, 320, 180, (40, 200, 220)) and near(frame, 960, 180, (40, 200, 220))
    assert near(frame, 4, 4, (40, 200, 220)) and near(frame, 636, 356, (40, 200, 220))  # crop fills
    if h > w:  # portrait in a landscape tile, padded: bars left and right
        assert near(frame, 644, 180, BACKGROUND) and near(frame, 1276, 180, BACKGROUND)
    assert near(frame, 640, 600, BACKGROUND)


def test_a_frozen_input_keeps_its_last_picture_a_dropped_one_shows_the_user_image_then_background() -> None:
    tile = Tile(0, 0, 640, 360, 0, ("a", "camera"), "a", CROP)
    compositor = Compositor(640, 360, BACKGROUND)
    compositor.set_layout(single(tile, 640, 360))
    compositor.update(("a", "camera"), picture(320, 180, (220, 30, 30)))
    for _ in range(3):  # nothing new: the same picture, frame after frame
        assert near(compositor.compose(), 320, 180, (220, 30, 30))
    user = decode_image(encode_image(solid(100, 100, (30, 200, 60))))
    default = decode_image(encode_image(solid(100, 100, (130, 50, 200))))
    compositor.set_images(MixImages(default_user=default, users={"a": user}))
    compositor.drop(("a", "camera"))
    assert near(compositor.compose(), 320, 180, (30, 200, 60))
    compositor.set_images(MixImages(default_user=default))
    assert near(compositor.compose(), 320, 180, (130, 50, 200))
    compositor.set_images(MixImages())
    assert near(compositor.compose(), 320, 180, BACKGROUND)
    compositor.update(("a", "camera"), picture(320, 180, (230, 210, 40)))  # back
    assert near(compositor.compose(), 320, 180, (230, 210, 40))


def test_a_new_picture_replaces_the_scaled_one() -> None:
    tile = Tile(0, 0, 320, 180, 0, ("a", "camera"), "a", CROP)
    compositor = Compositor(320, 180, BACKGROUND)
    compositor.set_layout(single(tile, 320, 180))
    for rgb in ((220, 30, 30), (30, 60, 220), (230, 210, 40)):
        compositor.update(("a", "camera"), picture(640, 360, rgb))
        assert near(compositor.compose(), 160, 90, rgb)


def test_background_image_is_scaled_and_cropped_to_the_canvas() -> None:
    # 2:1 image, halves red and blue, a green band 10 % wide at each outer edge: on a 16:9 canvas the
    # image is scaled to 1440x720 and 80 columns are cut each side, so the bands shrink to ~4 %.
    image = solid(200, 100, (220, 30, 30))
    image[:, 100:] = (30, 60, 220)
    image[:, :20] = image[:, 180:] = (30, 200, 60)
    compositor = Compositor(1280, 720, BACKGROUND)
    compositor.set_images(MixImages(background=decode_image(encode_image(image, "png"))))
    compositor.set_layout(single(Tile(540, 260, 200, 200, 0, ("a", "camera"), "a", CROP)))
    compositor.update(("a", "camera"), picture(100, 100, (230, 210, 40)))
    frame = compositor.compose()
    assert near(frame, 300, 100, (220, 30, 30)) and near(frame, 1000, 600, (30, 60, 220))
    assert near(frame, 30, 360, (30, 200, 60)) and near(frame, 1250, 360, (30, 200, 60))
    assert near(frame, 90, 360, (220, 30, 30)) and near(frame, 1190, 360, (30, 60, 220))
    assert near(frame, 640, 360, (230, 210, 40))  # the tile above it


def test_screen_background_image_fills_the_main_pane_under_the_padded_screen() -> None:
    params = layout_params({"layout_template": "screen_share_left", "layout_panes": []})
    group = [Participant("p", 0, False, True), Participant("q", 1, False, False)]
    layout = compute_layout(params, group, 1280, 720)
    compositor = Compositor(1280, 720, BACKGROUND)
    compositor.set_layout(layout)
    compositor.set_images(MixImages(screen=decode_image(encode_image(solid(64, 64, (240, 140, 20)), "jpeg"))))
    frame = compositor.compose()
    main = layout.tiles[0]
    assert near(frame, *centre(main), (240, 140, 20), 20)  # nobody shares yet: the screen image
    compositor.update(("p", "screen"), picture(960, 360, (40, 200, 220)))  # 8:3 screen in a 4:3 pane
    frame = compositor.compose()
    assert near(frame, *centre(main), (40, 200, 220))
    assert near(frame, main.x + 10, main.y + 10, (240, 140, 20), 20)  # the pad bars show the image
    # p's small tile does not repeat the screen; q sends audio only. No image: the background.
    assert near(frame, *centre(layout.tiles[1]), BACKGROUND) and near(frame, *centre(layout.tiles[2]), BACKGROUND)


def test_zorder_paints_higher_panes_on_top() -> None:
    panes = [
        {"user_id": "top", "x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5, "zorder": 3},
        {"user_id": "bottom", "x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0, "zorder": 1},
    ]
    layout = compute_layout(
        layout_params({"layout_template": "custom", "layout_panes": panes}),
        [Participant("top", 0, True, False), Participant("bottom", 1, True, False)],
        640,
        480,
    )
    compositor = Compositor(640, 480, BACKGROUND)
    compositor.set_layout(layout)
    compositor.update(("top", "camera"), picture(64, 48, (220, 30, 30)))
    compositor.update(("bottom", "camera"), picture(64, 48, (30, 60, 220)))
    frame = compositor.compose()
    assert near(frame, 320, 240, (220, 30, 30)) and near(frame, 20, 20, (30, 60, 220))


def test_fit_sizes_are_even_and_cover_or_fit() -> None:
    for src in ((640, 360), (359, 641), (3, 2), (1920, 1080)):
        for box in ((426, 240), (320, 180), (2, 2), (1280, 720)):
            cw, ch = fit_size(*src, *box, CROP)
            pw, ph = fit_size(*src, *box, PAD)
            assert cw % 2 == ch % 2 == pw % 2 == ph % 2 == 0
            assert cw >= box[0] and ch >= box[1]
            assert pw <= box[0] and ph <= box[1]


def test_layout_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError):
        Compositor(1280, 720).set_layout(Layout(640, 480, (), ()))
    with pytest.raises(ValueError):
        Compositor(641, 480)


def test_compose_is_cheap_when_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tile whose input has no new picture is neither scaled nor pasted again; a changed one is."""
    group = [Participant(f"u{i}", i, True, False) for i in range(9)]
    layout = compute_layout(layout_params({"layout_template": "nine_grids_view"}), group, 1280, 720)
    compositor = Compositor(1280, 720)
    compositor.set_layout(layout)
    for p in group:
        compositor.update((p.user_id, "camera"), picture(640, 360, (220, 30, 30)))
    pasted: list[Tile] = []
    scaled: list[tuple[int, int]] = []
    real_paste, real_scale = compositor_module._paste, compositor_module._scale_fit
    monkeypatch.setattr(compositor_module, "_paste", lambda c, t, p: (pasted.append(t), real_paste(c, t, p)))
    monkeypatch.setattr(
        compositor_module, "_scale_fit", lambda f, frame: (scaled.append((f.width, f.height)), real_scale(f, frame))[1]
    )
    first = compositor.compose().to_ndarray()
    assert len(pasted) == 9 and len(scaled) == 9
    pasted.clear()
    scaled.clear()
    second = compositor.compose()
    assert pasted == [] and scaled == [] and np.array_equal(first, second.to_ndarray())
    compositor.update(("u4", "camera"), picture(640, 360, (30, 60, 220)))
    third = compositor.compose()
    assert pasted == [layout.tiles[4]] and len(scaled) == 1
    assert near(third, *centre(layout.tiles[4]), (30, 60, 220))
    assert all(near(third, *centre(t), (220, 30, 30)) for i, t in enumerate(layout.tiles) if i != 4)


def test_scaled_pictures_are_let_go_once_pasted_unless_tiles_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Side by side, a pasted picture lives on in the canvas only (its memory is reused, still in the cache, by
    the next scaling); overlapping tiles are painted whole every frame and keep theirs: a frozen input's
    picture is not scaled again."""
    scaled: list[int] = []
    real_scale = compositor_module._scale_fit
    monkeypatch.setattr(compositor_module, "_scale_fit", lambda f, frame: (scaled.append(1), real_scale(f, frame))[1])
    a, b = ("a", "camera"), ("b", "camera")
    side_by_side = Layout(1280, 720, (Tile(0, 0, 640, 360, 0, a, "a", CROP), Tile(640, 0, 640, 360, 0, b, "b", CROP)))
    overlapping = Layout(1280, 720, (Tile(0, 0, 640, 360, 0, a, "a", CROP), Tile(320, 180, 640, 360, 1, b, "b", PAD)))
    for layout in (side_by_side, overlapping):
        compositor = Compositor(1280, 720, BACKGROUND)
        compositor.set_layout(layout)
        compositor.update(a, picture(640, 360, (220, 30, 30)))
        compositor.update(b, picture(640, 360, (30, 60, 220)))
        compositor.compose()
        kept = {key[0] for key in compositor._scaled}
        scaled.clear()
        compositor.update(b, picture(640, 360, (230, 210, 40)))  # a is frozen
        frame = compositor.compose()
        assert near(frame, 100, 100, (220, 30, 30)) and near(frame, 900, 200, (230, 210, 40))
        if layout is side_by_side:
            assert kept == set() and compositor._scaled == {} and scaled == [1]  # a: not painted at all
        else:
            assert kept == {a, b} and scaled == [1]  # a: painted again from its kept scaled picture


def test_a_padded_tile_whose_picture_changes_shape_shows_the_background_in_its_new_bars() -> None:
    tile = Tile(0, 0, 640, 360, 0, ("a", "camera"), "a", PAD)
    compositor = Compositor(640, 360, BACKGROUND)
    compositor.set_layout(single(tile, 640, 360))
    compositor.update(("a", "camera"), picture(640, 360, (220, 30, 30)))  # fills the tile
    assert near(compositor.compose(), 20, 180, (220, 30, 30))
    compositor.update(("a", "camera"), picture(180, 360, (30, 200, 60)))  # portrait: bars left and right
    frame = compositor.compose()
    assert near(frame, 320, 180, (30, 200, 60))
    assert near(frame, 20, 180, BACKGROUND) and near(frame, 620, 180, BACKGROUND)


def test_a_shrunk_picture_is_area_averaged() -> None:
    """Downscaling averages the source pixels each output pixel covers (a box filter): one-pixel stripes
    every third column, shrunk by 3:2, give alternately 2/3 of a stripe and no stripe (bilinear would blur
    them to about 137 and 41)."""
    luma = np.full((360, 640), 16, np.uint8)
    luma[:, ::3] = 235
    source = av.VideoFrame(640, 360, "yuv420p")
    y, u, v = planes_of(source)
    y[:], u[:], v[:] = luma, 128, 128
    compositor = Compositor(640, 360, BACKGROUND)
    compositor.set_layout(single(Tile(0, 0, 426, 240, 0, ("a", "camera"), "a", CROP), 640, 360))
    compositor.update(("a", "camera"), source)
    row = planes_of(compositor.compose())[0][120, :6].astype(int)
    assert all(abs(v - (235 + 16 / 2) / 1.5) < 8 for v in row[::2]), row  # 162
    assert all(abs(v - 16) < 8 for v in row[1::2]), row


def test_a_full_grid_then_a_gap_shows_the_background_again() -> None:
    group = [Participant(f"u{i}", i, True, False) for i in range(4)]
    layout = compute_layout(layout_params({"layout_template": "nine_grids_view"}), group, 640, 360)
    compositor = Compositor(640, 360, BACKGROUND)
    compositor.set_layout(layout)
    for p in group:
        compositor.update((p.user_id, "camera"), picture(320, 180, (220, 30, 30)))
    assert all(near(compositor.compose(), *centre(t), (220, 30, 30)) for t in layout.tiles)
    compositor.drop(("u3", "camera"))
    frame = compositor.compose()
    assert near(frame, *centre(layout.tiles[3]), BACKGROUND)
    assert near(frame, *centre(layout.tiles[0]), (220, 30, 30))


def test_spread_scales_each_new_input_in_one_task_and_paints_the_same_canvas(monkeypatch: pytest.MonkeyPatch) -> None:
    """``compose(spread)``: one task per input with a new picture, whatever tiles it shows in (an input's
    scalers are used by one thread at a time); the canvas is the one ``compose()`` paints."""
    tiles = (
        Tile(0, 0, 640, 360, 0, ("a", "camera"), "a", CROP),
        Tile(640, 0, 320, 180, 0, ("a", "camera"), "a", PAD),  # the same input twice, at two sizes
        Tile(0, 360, 640, 360, 0, ("b", "camera"), "b", CROP),
        Tile(640, 360, 640, 360, 0, ("c", "camera"), "c", PAD),
    )
    layout = Layout(1280, 720, tiles, ())
    calls: list[int] = []
    scaled_in_spread: list[bool] = []
    spreading = False
    scale = compositor_module._scale_fit

    def noting(*args: Any) -> Any:
        scaled_in_spread.append(spreading)
        return scale(*args)

    monkeypatch.setattr(compositor_module, "_scale_fit", noting)

    def spread(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
        nonlocal spreading
        calls.append(len(tasks))
        spreading = True
        try:
            return [task() for task in reversed(tasks)][::-1]  # run out of order, given back in order
        finally:
            spreading = False

    together, alone = Compositor(1280, 720, BACKGROUND), Compositor(1280, 720, BACKGROUND)
    for c in (together, alone):
        c.set_layout(layout)
    for n in range(3):
        for i, user in enumerate("abc"):
            frame = ColourVideo(PALETTE[(i + n) % len(PALETTE)], width=480 + 160 * i, height=360).frame(n)
            for c in (together, alone):
                c.update((user, "camera"), frame)
        scaled_in_spread.clear()
        got = together.compose(spread)
        assert scaled_in_spread == [True] * 4  # every scale in the tasks, none again while painting
        expected = alone.compose()
        assert np.array_equal(got.to_ndarray(format="yuv420p"), expected.to_ndarray(format="yuv420p"))
    assert calls == [3, 3, 3]
    for c in (together, alone):
        c.update(("b", "camera"), picture(640, 360, (220, 30, 30)))
    got, expected = together.compose(spread), alone.compose()
    assert calls == [3, 3, 3]  # one new picture: scaled as it is painted, nothing to share out
    assert np.array_equal(got.to_ndarray(format="yuv420p"), expected.to_ndarray(format="yuv420p"))
    assert near(got, 320, 540, (220, 30, 30))
