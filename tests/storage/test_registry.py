"""Locations from configuration, and s3:// URIs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from emberrtc.config import Settings
from emberrtc.domain.clock import ManualClock
from emberrtc.storage.errors import InvalidObjectName, UnknownStorageLocation
from emberrtc.storage.local_store import LocalStore
from emberrtc.storage.registry import StorageRegistry, load_locations, parse_s3_uri
from emberrtc.storage.s3_store import S3Store


def test_default_is_one_local_location(tmp_path: Path) -> None:
    reg = StorageRegistry.from_settings(replace(Settings(), data_dir=tmp_path), ManualClock())
    assert reg.locations == ["local"]
    local = reg.get("local")
    assert isinstance(local, LocalStore) and local.root == tmp_path / "storage"
    assert (tmp_path / "download.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(UnknownStorageLocation) as err:
        reg.get("cn-north-4")
    assert err.value.code == "RTC.00001003"
    assert "cn-north-4" in err.value.message and "local" in err.value.message


def test_locations_from_file_and_env(tmp_path: Path) -> None:
    cfg = tmp_path / "storage.json"
    cfg.write_text(
        json.dumps(
            {
                "locations": {
                    "cn-north-4": {
                        "type": "s3",
                        "endpoint": "http://127.0.0.1:9",
                        "region": "cn-north-4",
                        "access_key": "ak",
                        "secret_key": "sk",
                        "addressing_style": "path",
                    },
                    "archive": {"type": "local", "root": str(tmp_path / "arch"), "create_buckets": False},
                }
            }
        )
    )
    env = {
        "EMBER_DATA_DIR": str(tmp_path),
        "EMBER_STORAGE_CONFIG": str(cfg),
        "EMBER_STORAGE_LOCATIONS": json.dumps({"ap-southeast-1": {"type": "local"}}),
        "EMBER_DOWNLOAD_URL_KEY": "secret",
        "EMBER_PUBLIC_URL": "https://rtc.example.com/",
    }
    settings = Settings().with_env(env)
    reg = StorageRegistry.from_settings(settings, ManualClock())
    assert reg.locations == ["ap-southeast-1", "archive", "cn-north-4", "local"]
    s3 = reg.get("cn-north-4")
    assert isinstance(s3, S3Store) and s3.settings.addressing_style == "path"
    archive = reg.get("archive")
    assert isinstance(archive, LocalStore) and archive.root == tmp_path / "arch" and not archive.create_buckets
    other = reg.get("ap-southeast-1")
    assert isinstance(other, LocalStore) and other.root == tmp_path / "storage-ap-southeast-1"
    assert reg.local("cn-north-4") is None and reg.local("archive") is archive
    assert other.download_url("b-1", "x.mp4").startswith("https://rtc.example.com/files/ap-southeast-1/b-1/x.mp4?")
    assert not (tmp_path / "download.key").exists()  # the configured key is used


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"x": {"type": "ftp"}}, "type must be"),
        ({"x": {"type": "s3"}}, "endpoint or a region"),
        ({"x": {"type": "local", "rooot": "/tmp"}}, "unknown keys"),
        ({"x": "local"}, "expected a JSON object"),
    ],
)
def test_bad_configuration_is_refused_at_start(tmp_path: Path, raw: dict, message: str) -> None:
    settings = replace(Settings(), data_dir=tmp_path, storage_locations=json.dumps(raw))
    with pytest.raises(ValueError, match=message):
        load_locations(settings)


def test_s3_uris(tmp_path: Path) -> None:
    assert parse_s3_uri("s3://images/bg/a.png") == ("images", "bg/a.png")
    for bad in ("http://images/a.png", "s3://images", "s3://images/", "s3://Images/a.png", "s3://images/../a.png"):
        with pytest.raises(InvalidObjectName):
            parse_s3_uri(bad)
    reg = StorageRegistry.from_settings(replace(Settings(), data_dir=tmp_path), ManualClock())
    ref = reg.resolve_uri("s3://images/bg/a.png")
    assert (ref.store.location, ref.bucket, ref.name) == ("local", "images", "bg/a.png")
    with pytest.raises(UnknownStorageLocation):
        reg.resolve_uri("s3://images/bg/a.png", "cn-north-4")


async def test_check_target(tmp_path: Path) -> None:
    reg = StorageRegistry.from_settings(replace(Settings(), data_dir=tmp_path), ManualClock())
    await reg.check_target("local", "records")  # the embedded default makes buckets on first use
    with pytest.raises(UnknownStorageLocation):
        await reg.check_target("cn-north-4", "records")


def test_download_links_follow_the_scheme_and_the_public_url(tmp_path: Path) -> None:
    tls = Settings(data_dir=tmp_path, host="10.0.0.5", port=8443, tls_cert="c.pem", tls_key="k.pem")
    links = StorageRegistry.from_settings(tls, ManualClock()).links
    assert links is not None and links.url("local", "b", "x.mp4").startswith(
        "https://10.0.0.5:8443/files/local/b/x.mp4?"
    )
    # ember serve sets the derived public URL (deploy/public_url.py); the links use it as given.
    public = replace(tls, public_url="https://rtc.example.com")
    links = StorageRegistry.from_settings(public, ManualClock()).links
    assert links is not None and links.url("local", "b", "x.mp4").startswith("https://rtc.example.com/files/")
