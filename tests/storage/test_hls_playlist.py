"""Which playlist lines are a recording's own segments, and what a signed playlist looks like (pure)."""

from __future__ import annotations

import pytest

from emberrtc.storage.hls_playlist import is_playlist, segment_object, sign_playlist

PLAYLIST = "app/HLS/st_1/st_1.m3u8"


@pytest.mark.parametrize(
    ("uri", "obj"),
    [
        ("st_1_00000.ts", "app/HLS/st_1/st_1_00000.ts"),
        ("st_1_99999.ts", "app/HLS/st_1/st_1_99999.ts"),
        ("st%5F1_00000.ts", "app/HLS/st_1/st_1_00000.ts"),  # escapes are decoded, then checked
    ],
)
def test_own_segments(uri: str, obj: str) -> None:
    assert segment_object(PLAYLIST, uri) == obj


@pytest.mark.parametrize(
    "uri",
    [
        "st_10_00000.ts",  # siblings whose stems start with this one's
        "st_1_x_00000.ts",
        "st_1_2_00000.ts",
        "st_1_.ts",
        "st_1_%C2%B2.ts",  # a digit, but not an ASCII one
        "st_2_00000.ts",
        "st_1.m3u8",
        "st_1_00000.mp4",
        "../st_1/st_1_00000.ts",
        "st_1_%2F..%2Fx.ts",
        "st_1_%5C..%5Cx.ts",
        "%2E%2E",
        "/files/local/b/app/HLS/st_1/st_1_00000.ts",
        "http://127.0.0.1/st_1_00000.ts",
        "//127.0.0.1/st_1_00000.ts",
        "st_1_00000.ts?expires=1",
        "st_1_00000.ts#t=1",
        "st_1_%FF.ts",
        "st_1_%00.ts",
        "st_1_ 0.ts",
        "",
    ],
)
def test_anything_else_is_not_signed(uri: str) -> None:
    assert segment_object(PLAYLIST, uri) is None


def test_a_playlist_at_the_bucket_root() -> None:
    assert segment_object("st.m3u8", "st_00000.ts") == "st_00000.ts"
    assert is_playlist("a/B.M3U8") and not is_playlist("a/b.ts")


def test_signed_playlist_keeps_every_tag_and_signs_each_own_segment_once() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nst_1_00000.ts\n"
        "#EXTINF:1.500,\nother_00000.ts\n#EXT-X-ENDLIST\n"
    )
    calls: list[list[tuple[str, str]]] = []

    def links(segments: list[tuple[str, str]]) -> list[str]:
        calls.append(segments)
        return [f"{uri}?signed" for uri, _ in segments]

    out = sign_playlist(text, PLAYLIST, links)
    assert out == text.replace("st_1_00000.ts\n", "st_1_00000.ts?signed\n")
    assert calls == [[("st_1_00000.ts", "app/HLS/st_1/st_1_00000.ts")]]
