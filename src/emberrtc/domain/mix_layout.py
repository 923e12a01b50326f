"""Rules for mixed-stream layouts (spec 4.8.1 Table 4-175 and the notes at the top of 4.8.1).

Works on plain pane dicts so the API schema (on create) and the job service (on update, where the
job's stored template matters) share one check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from emberrtc.domain.errors import InvalidParameterCombination

AUDIO_ONLY = "audio_only"
SCREEN_SHARE_TEMPLATES = ("screen_share_left", "screen_share_right")
_ENCODE_TEMPLATE = re.compile(r"^(\d+)[*x](\d+)_(\d+)_(\d+)$")


def parse_encode_template(name: str) -> tuple[int, int, int, int] | None:
    """spec Table 4-175 ``encode_template``: ``1280x720_15_2260`` (the tables write ``1280*720_15_2260``)
    -> (1280, 720, 15, 2260): width, height, frames per second, kbit/s; ``audio_only`` -> None. Anything
    else is a ``ValueError``."""
    if name == AUDIO_ONLY:
        return None
    m = _ENCODE_TEMPLATE.fullmatch(name)
    if not m:
        raise ValueError(f"not an encode template: {name}")
    w, h, fps, kbps = (int(g) for g in m.groups())
    if min(w, h, fps, kbps) <= 0 or w % 2 or h % 2:
        raise ValueError(f"not an encode template: {name}")
    return w, h, fps, kbps


def check_layout(template: str | None, panes: Sequence[Mapping[str, Any]] | None, audio_only: bool) -> None:
    """Raise :class:`InvalidParameterCombination` when template, panes and audio-only do not fit."""
    if audio_only:
        if template is not None or panes:
            raise InvalidParameterCombination(
                "audio_only records no video: leave layout_template and layout_panes empty"
            )
        return
    if template is None:
        raise InvalidParameterCombination("a video encode_template needs a layout_template")
    panes = panes or []
    ids = [p.get("id") for p in panes if p.get("id") is not None]
    if len(ids) != len(set(ids)):
        raise InvalidParameterCombination("layout_panes has two panes with the same id")
    if template == "custom":
        if not panes:
            raise InvalidParameterCombination("the custom layout_template needs layout_panes")
        for p in panes:
            if any(p.get(k) is None for k in ("x", "y", "width", "height")):
                raise InvalidParameterCombination("every pane of a custom layout needs x, y, width and height")
            if not p.get("user_id"):
                raise InvalidParameterCombination("every pane of a custom layout needs a user_id")
    elif template in SCREEN_SHARE_TEMPLATES:
        for p in panes:
            if p.get("filling_policy") is None:
                raise InvalidParameterCombination("panes of screen sharing templates need a filling_policy")
            if p.get("filling_policy") == "FIXED_USER" and not p.get("user_id"):
                raise InvalidParameterCombination("a FIXED_USER pane needs a user_id")


def check_update(current: Mapping[str, Any], update: Mapping[str, Any]) -> None:
    """Validate a layout update (Table 4-207) against the job's current mix parameters."""
    new_template = update.get("layout_template")
    if new_template is not None and new_template != "custom":
        raise InvalidParameterCombination("only custom layout templates can be set by an update (Table 4-207)")
    audio_only = current.get("encode_template") == AUDIO_ONLY
    if audio_only and (new_template is not None or update.get("layout_panes")):
        raise InvalidParameterCombination("an audio_only job has no video layout to update")
    template = new_template or current.get("layout_template")
    panes = update.get("layout_panes")
    if panes is None:
        panes = current.get("layout_panes")
    check_layout(template, panes, audio_only)
