"""URLs in logs: user-info and query masked, in one URL, inside text, and in every log record."""

from __future__ import annotations

import io
import logging

import pytest

from emberrtc.domain.redaction import MaskUrlsFilter, mask_url, mask_urls


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://alice:pa55@hooks.example.com:8443/cb?token=t0k#frag", "https://***@hooks.example.com:8443/cb?***"),
        ("http://127.0.0.1:9000/bucket/key?X-Amz-Signature=abc", "http://127.0.0.1:9000/bucket/key?***"),
        ("http://token@[::1]/x", "http://***@[::1]/x"),
        ("ws://127.0.0.1:8188", "ws://127.0.0.1:8188"),
        ("http://host/plain/path", "http://host/plain/path"),
        ("not a url", "***"),
        ("http://host:99999/x", "***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_keeps_only_leading_path_segments() -> None:
    assert mask_url("rtmp://u:p@live.example.com/app/streamkey?x=1", keep_segments=1) == (
        "rtmp://***@live.example.com/app/***?***"
    )
    assert mask_url("rtmp://h/app", keep_segments=1) == "rtmp://h/app"


def test_mask_urls_in_text() -> None:
    text = (
        "ConnectError: cannot reach 'https://bob:s3cr3t@cb.example.com/hook?sig=xyz'. "
        "Retrying http://host/ok, then (s3://bucket/key?versionId=v)."
    )
    assert mask_urls(text) == (
        "ConnectError: cannot reach 'https://***@cb.example.com/hook?***'. "
        "Retrying http://host/ok, then (s3://bucket/key?***)."
    )
    assert mask_urls("nothing to mask") == "nothing to mask"


def test_filter_masks_messages_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(MaskUrlsFilter())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("POST %s failed", "http://u:hunter2@h/cb?token=abc123")
        try:
            raise ValueError("bad endpoint http://AKIDEXAMPLE:wJalrXUtnFEMI@s3.local/b?sig=deadbeef")
        except ValueError:
            logger.exception("upload failed")
    finally:
        logger.removeHandler(handler)
    logged = out.getvalue()
    for secret in ("hunter2", "abc123", "wJalrXUtnFEMI", "deadbeef", "AKIDEXAMPLE"):
        assert secret not in logged
    assert "POST http://***@h/cb?*** failed" in logged
    assert "ValueError: bad endpoint http://***@s3.local/b?***" in logged
