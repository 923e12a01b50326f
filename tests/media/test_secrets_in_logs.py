"""No secret in any log of a real run (first-run issue, item 6).

A real ``ember serve`` (Janus as its child, SQLite in a data folder) runs a recording whose callback URL
carries a query token (one with a user name and a password is refused first); an AK/SK-signed request and
an IAM login go through. Then every secret of the run (Janus's API and admin secrets and the videoroom admin
key from the generated config, the master key, the tenant's password, the AK/SK secret, the app key, the
callback URL's password and query token) is looked for in the server's output and in every log file of the
data folder: none may be there.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

import pytest
from tests.media.test_crash_recovery import RED, EmberServe, api, join_and_publish, login
from tests.support.http_receiver import HttpReceiver
from tests.support.waiting import until

from emberrtc.client import RoomClient

pytestmark = pytest.mark.media

AUTH_KEY = "5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"


class KeepaliveServe(EmberServe):
    """``ember serve`` whose Janus session sends a keepalive (with the API secret) twice a second: the
    recurring Janus traffic cycles many times within the run."""

    def _env(self) -> dict[str, str]:
        return {**super()._env(), "EMBER_JANUS_KEEPALIVE": "0.5"}


def _jcfg_value(path: Path, key: str) -> str:
    match = re.search(rf'^\s*{key} = "([^"]+)"', path.read_text(), re.MULTILINE)
    assert match, f"{key} not in {path}"
    return match.group(1)


def _show_app_with_aksk(url: str, ak: str, sk: str, project_id: str, app_id: str) -> str:
    from huaweicloudsdkcloudrtc.v2 import CloudRTCClient, ShowAppRequest
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig

    config = HttpConfig.get_default_config()
    config.retry_times = 0
    client = (
        CloudRTCClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(ak, sk, project_id))
        .with_endpoints([url])
        .build()
    )
    return str(client.show_app(ShowAppRequest(app_id=app_id)).app_name)


async def test_no_secret_reaches_any_log(tmp_path: Path) -> None:
    server = KeepaliveServe(tmp_path / "data")
    server.data_dir.mkdir()
    password = "pw-" + secrets.token_urlsafe(12)
    server.cli("tenant", "create", "quietco", "--password", password)
    credential = server.cli("credential", "create", "--tenant", "quietco")
    callback_password, callback_token = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    receiver = await HttpReceiver().start()
    client: RoomClient | None = None
    try:
        await server.start()
        token = await login(server, "quietco", password)
        created = await api(server, token, "POST", "/v2/apps", {"app_name": "quiet"})
        assert created.status_code == 201, created.text
        app_id = created.json()["app_id"]
        app_key = (await api(server, token, "GET", f"/v2/apps/{app_id}")).json()["authentication"]["app_key"]
        name = await asyncio.to_thread(
            _show_app_with_aksk, server.url, credential["ak"], credential["sk"], credential["project_id"], app_id
        )
        assert name == "quiet"

        # A URL with user-info is refused (domain.outbound), without the password in the answer (or, below, a log).
        callback = f"/v2/apps/{app_id}/record-callback"
        url = f"http://hooker:{callback_password}@127.0.0.1:{receiver.port}/events?token={callback_token}"
        put = await api(server, token, "PUT", callback, {"url": url, "auth_key": AUTH_KEY})
        assert put.status_code == 400 and "user-info" in put.text and callback_password not in put.text, put.text
        url = f"http://127.0.0.1:{receiver.port}/events?token={callback_token}"
        put = await api(server, token, "PUT", callback, {"url": url, "auth_key": AUTH_KEY})
        assert put.status_code == 200, put.text
        rule = {
            "obs_addr": {"location": "local", "project_id": credential["project_id"], "bucket": "quiet-records"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        }
        rule_id = (await api(server, token, "POST", f"/v2/apps/{app_id}/record-rules", rule)).json()["rule_id"]

        # A user publishes into a room of the server's Janus; her stream is recorded.
        client = await join_and_publish(server, app_id, app_key, "ann", RED)
        job = {"room_id": "crash-room", "user_id": "ann", "record_param": {"record_rule_id": rule_id}}
        started = await api(server, token, "POST", f"/v2/apps/{app_id}/individual-stream-jobs", job)
        assert started.status_code == 201, started.text
        job_id = started.json()["job_id"]

        # The callback was delivered, with the URL's query as given.
        await until(lambda: receiver.answered(), within=30, what="a callback delivery")
        first = receiver.answered()[0]
        assert first.path == f"/events?token={callback_token}"

        stopped = await api(server, token, "DELETE", f"/v2/apps/{app_id}/individual-stream-jobs/{job_id}")
        assert stopped.status_code == 204, stopped.text
        await until(lambda: len(receiver.answered()) >= 3, within=30, what="the job's last callbacks")
    finally:
        if client is not None:
            await asyncio.wait_for(client.leave(), 10)
        server.stop()
        await receiver.stop()

    janus_dir = server.data_dir / "janus"
    generated = {
        "Janus API secret": _jcfg_value(janus_dir / "janus.jcfg", "api_secret"),
        "Janus admin secret": _jcfg_value(janus_dir / "janus.jcfg", "admin_secret"),
        "videoroom admin key": _jcfg_value(janus_dir / "janus.plugin.videoroom.jcfg", "admin_key"),
        "master key": (server.data_dir / "master.key").read_text().strip(),
    }
    given = {
        "tenant password": password,
        "AK/SK secret": credential["sk"],
        "app key": app_key,
        "callback URL password": callback_password,
        "callback URL query token": callback_token,
    }
    logs = {path: path.read_text(errors="replace") for path in server.data_dir.rglob("*.log")}
    assert server.log in logs and janus_dir / "janus.log" in logs
    # The logs are those of a run that did the work: the server's lines and Janus's.
    assert "callback RECORD_NEW_FILE_START" in logs[server.log]
    assert "Janus" in logs[janus_dir / "janus.log"]
    assert "keepalive for janus session" not in logs[server.log]  # no keepalive failed
    for what, secret in {**generated, **given}.items():
        assert len(secret) >= 12, what
        for path, text in logs.items():
            assert secret not in text, f"the {what} is in {path.relative_to(server.data_dir)}"
