"""docs/layouts/ holds what the compositor draws today: re-render every picture and compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emberrtc.recording.layout_pictures import render, scenes
from emberrtc.recording.mix_images import decode_image

DOCS = Path(__file__).resolve().parents[2] / "docs"
PICTURES = DOCS / "layouts"
REGENERATE = "python -m emberrtc.recording.layout_pictures docs/layouts"


@pytest.mark.parametrize("scene", scenes(), ids=lambda s: s.name)
def test_documented_picture_matches_the_compositor(scene: object) -> None:
    from emberrtc.recording.layout_pictures import Scene

    assert isinstance(scene, Scene)
    path = PICTURES / f"{scene.name}.png"
    assert path.exists(), f"{path} is missing: run {REGENERATE}"
    documented = decode_image(path.read_bytes()).to_ndarray(format="rgb24").astype(np.int16)
    drawn = render(scene).to_ndarray(format="rgb24").astype(np.int16)
    assert documented.shape == drawn.shape
    # Scaler rounding may differ by a level or two between FFmpeg builds; a moved tile edge differs by far
    # more, over whole rows or columns.
    differing = np.abs(documented - drawn).max(axis=2) > 8
    assert differing.mean() < 0.0005, f"{path.name} drifted from the compositor: run {REGENERATE}"


def test_every_picture_is_a_scene_and_in_the_document() -> None:
    names = {s.name for s in scenes()}
    assert {p.stem for p in PICTURES.glob("*.png")} == names
    text = (DOCS / "mix-layouts.md").read_text()
    for name in names:
        assert f"layouts/{name}.png" in text, f"docs/mix-layouts.md does not show {name}"
