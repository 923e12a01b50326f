"""Jobs, Recordings, live Rooms, Usage and Try it pages."""

from __future__ import annotations

import html
import os
import re
import secrets
import time
from collections.abc import Iterator
from fractions import Fraction
from urllib.parse import urlsplit

import av
import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from emberrtc.cluster.keyspace import Keyspace
from emberrtc.cluster.room_calls import RoomCalls
from emberrtc.cluster.room_control import RoutedPreviews
from emberrtc.cluster.subscriber import Subscriber
from emberrtc.domain.clock import ManualClock
from emberrtc.domain.room_session import join_signature
from emberrtc.recording.mix_preview import LocalPreviews
from emberrtc.store.models import AbnormalEvent, Room
from tests.cluster.conftest import REDIS_URL, redis_client
from tests.conftest import token_for
from tests.console.conftest import Console
from tests.console.recording import record_file
from tests.support.server import ServerThread, TenantInfo
from tests.support.spec_checks import create_rule, mp4_rule


@pytest.fixture
def api(server: ServerThread, tenant: TenantInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as c:
        yield c


@pytest.fixture
def app_id(api: httpx.Client) -> str:
    return str(api.post("/v2/apps", json={"app_name": "live"}).json()["app_id"])


def _wait_for(predicate, seconds: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_jobs_and_recordings_pages_list_the_files_and_play_them(
    console: Console, server: ServerThread, api: httpx.Client, tenant: TenantInfo, app_id: str, tmp_path
) -> None:
    stored = record_file(server, api, app_id, tenant.project_id, seconds=3.0)
    jobs = console.get(f"/console/apps/{app_id}/jobs").text
    assert stored.job_id in jobs and "single stream" in jobs and "MP4 0:03" in jobs
    page = _wait_for(lambda: (t := console.get(f"/console/apps/{app_id}/recordings")).text.count("data-src") and t, 20)
    assert stored.object_name in page.text and "0:03" in page.text
    (url,) = re.findall(r'data-src="([^"]+)"', page.text)
    link = urlsplit(url.replace("&amp;", "&"))
    assert link.path.startswith("/files/cn-north-4/recordings/") and "signature=" in link.query
    # The page may play it: its CSP lets media come from where the link points (the server's public URL,
    # unset on this test server).
    assert f"media-src 'self' blob: {link.scheme}://{link.netloc}" in page.headers["content-security-policy"]
    # The link is the file: read it back.
    body = httpx.get(f"{server.url}{link.path}?{link.query}").content
    assert len(body) == stored.size
    (tmp_path / "back.mp4").write_bytes(body)
    with av.open(str(tmp_path / "back.mp4")) as back:
        video = back.streams.video[0]
        assert (video.width, video.height) == (320, 180)
        assert abs(float(back.duration / av.time_base) - 3.0) < 0.3


def test_stopping_a_job_from_the_jobs_page(
    console: Console, api: httpx.Client, app_id: str, tenant: TenantInfo
) -> None:
    rule = api.post(
        f"/v2/apps/{app_id}/record-rules",
        json={
            "obs_addr": {"location": "cn-north-4", "project_id": tenant.project_id, "bucket": "recordings"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        },
    ).json()
    job = api.post(
        f"/v2/apps/{app_id}/mix-stream-jobs",
        json={
            "mix_param": {
                "room_id": "room9",
                "encode_template": "1280x720_15_2260",
                "layout_template": "nine_grids_view",
            },
            "record_param": {"record_rule_id": rule["rule_id"]},
        },
    ).json()
    page = console.get(f"/console/apps/{app_id}/jobs").text
    assert job["job_id"] in page and "mixed" in page
    r = console.post(f"/console/apps/{app_id}/jobs/{job['job_id']}/stop", {"kind": "mix"})
    assert r.status_code == 303
    stopped = api.get(f"/v2/apps/{app_id}/mix-stream-jobs/{job['job_id']}").json()
    assert stopped["state"] == "STOPPED"
    page = console.get(f"/console/apps/{app_id}/jobs").text
    assert stopped["stop_reason"] in page
    wrong = console.post(f"/console/apps/{app_id}/jobs/{job['job_id']}/stop", {"kind": "individual"})
    assert wrong.status_code == 404 and "RTC.00001008" in wrong.text


def test_rooms_page_and_its_event_stream(console: Console, app_id: str) -> None:
    page = console.get(f"/console/apps/{app_id}/rooms")
    assert page.status_code == 200 and "No room is running" in page.text
    assert f'data-events="/console/apps/{app_id}/rooms/events"' in page.text
    with console.http.stream("GET", f"/console/apps/{app_id}/rooms/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in events.iter_lines():
            lines.append(line)
            if line == "" and any(x.startswith("event: rooms") for x in lines):
                break
        assert "event: rooms" in lines and any("No room is running" in x for x in lines)
    # Remove and dismiss go through the room service: the API's checks and errors.
    bad = console.post(f"/console/apps/{app_id}/rooms/remove", {"room_id": "room 1", "user_id": "alice"})
    assert bad.status_code == 400 and "RTC.00001003" in bad.text and "room_id" in bad.text
    gone = console.post(f"/console/apps/{app_id}/rooms/dismiss", {"room_id": "room1"})
    assert gone.status_code == 404 and "RTC.00001026" in gone.text


def test_usage_page_draws_the_statistics(
    console: Console, server: ServerThread, api: httpx.Client, tenant: TenantInfo, app_id: str
) -> None:
    empty = console.get(f"/console/apps/{app_id}/usage")
    assert empty.status_code == 200 and "Recorded minutes per day" in empty.text
    assert "Abnormal events, last hour" in empty.text and "None." in empty.text
    assert "<rect" not in empty.text
    record_file(server, api, app_id, tenant.project_id, seconds=3.0)
    page = console.get(f"/console/apps/{app_id}/usage").text
    # Three seconds recorded today: one bar, 0.05 minutes, as the statistics API says.
    day = time.strftime("%Y-%m-%d", time.gmtime())
    usage = api.get(
        f"/v1/{tenant.project_id}/rtc/history/usage",
        params={"app": app_id, "metric": "RecordDuration", "start_date": day, "end_date": day},
    ).json()
    assert usage["usage"][-1]["total_duration"] == 3
    assert page.count("<rect") == 1 and "0.05 min" in page


def test_usage_page_draws_abnormal_events_by_cause(
    console: Console, server: ServerThread, api: httpx.Client, app_id: str
) -> None:
    now = server.clock.now()

    def event(t: float, user: str, kind: int, factor: int) -> AbnormalEvent:
        stage = "join_room" if kind == 1 else "communication"
        return AbnormalEvent(
            time=t, app_id=app_id, room_id="r1", user_id=user, stage=stage, location="local", peer_uid="",
            abnormal_type=kind, abnormal_factor=factor,
        )  # fmt: skip

    rows = [event(now - 30, u, 2, 14) for u in ("bob", "carol", "dave")] + [event(now - 5, "erin", 1, 1)]
    rows.append(event(now - 7200, "old", 3, 13))  # before the last hour: not counted
    assert server.services is not None
    server.call(server.services.db.run(lambda s: s.add_all(rows)))
    page = console.get(f"/console/apps/{app_id}/usage").text
    # The chart has the statistics API's figures (5.12): users per cause, most first.
    dims = api.get("/v1/rtc/data/abnormal-event/dimension", params={"app": app_id, "dimension": "abnormal_factor"})
    assert [d["user_count"] for d in dims.json()["dimensions"]] == [3, 1]
    chart = page.split('aria-label="Users with abnormal events, by cause, last hour"', 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'fill="currentColor">([^<]+)</text>', chart)
    assert labels == ["Video freeze: Downlink video packet loss", "3", "Slow join: Link setup failure", "1"]
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([0-9.]+)"', chart)]
    assert len(widths) == 2 and abs(widths[0] - 3 * widths[1]) < 0.2
    assert 'Abnormal events, last hour <span class="muted">(4)</span>' in page


def test_try_it_makes_a_signed_join_link(console: Console, api: httpx.Client, app_id: str, clock: ManualClock) -> None:
    page = console.get(f"/console/apps/{app_id}/try")
    assert page.status_code == 200
    bad = console.post(f"/console/apps/{app_id}/try", {"room_id": "no spaces", "user_id": "bob"})
    assert bad.status_code == 400 and "RTC.00001003" in bad.text
    r = console.post(f"/console/apps/{app_id}/try", {"room_id": "room1", "user_id": "bob"})
    (link,) = re.findall(r'href="(/demo#[^"]+)"', r.text)
    fields = dict(p.split("=", 1) for p in link.split("#", 1)[1].replace("&amp;", "&").split("&"))
    key = api.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
    assert key not in r.text and "?" not in link  # the join travels in the fragment only
    assert fields["app_id"] == app_id and fields["room"] == "room1" and fields["user"] == "bob"
    assert fields["signature"] == join_signature(key, app_id, "room1", "bob", fields["ctime"])
    assert 3500 < int(fields["ctime"]) - clock.now() <= 3600  # the server's clock (the session's, held)


def _mix_form(rule_id: str, **changes: str) -> dict[str, str]:
    form = {
        "room_id": "room7",
        "layout_template": "nine_grids_view",
        "encode_template": "1280x720_15_2260",
        "max_idle_time": "",
        "record_rule_id": rule_id,
    }
    form.update(changes)
    return form


def test_starting_a_mixed_job_with_the_layout_picker(
    console: Console, api: httpx.Client, app_id: str, tenant: TenantInfo
) -> None:
    page = console.get(f"/console/apps/{app_id}/jobs").text
    assert 'value="screen_share_left"' in page and 'value="audio_only"' in page
    rule = api.post(
        f"/v2/apps/{app_id}/record-rules",
        json={
            "obs_addr": {"location": "cn-north-4", "project_id": tenant.project_id, "bucket": "recordings"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        },
    ).json()["rule_id"]
    # Each bad choice gets the API's own error for the same body.
    for changes, api_mix, field in (
        ({"max_idle_time": "2"}, {"max_idle_time": 2}, "max_idle_time"),
        ({"room_id": "bad room"}, {"room_id": "bad room"}, "room_id"),
        ({"encode_template": "audio_only"}, {"encode_template": "audio_only"}, None),
        ({"layout_template": ""}, {"layout_template": None}, None),
    ):
        mix = {"room_id": "room7", "encode_template": "1280x720_15_2260", "layout_template": "nine_grids_view"}
        mix.update(api_mix)
        mix = {k: v for k, v in mix.items() if v is not None}
        expected = api.post(
            f"/v2/apps/{app_id}/mix-stream-jobs", json={"mix_param": mix, "record_param": {"record_rule_id": rule}}
        ).json()
        assert expected["error_code"].startswith("RTC."), expected
        r = console.post(f"/console/apps/{app_id}/jobs/mix", _mix_form(rule, **changes))
        assert r.status_code == 400
        assert expected["error_code"] in r.text and expected["error_msg"] in html.unescape(r.text)
        if field is not None:
            assert re.findall(r'name="([^"]+)"[^>]*aria-invalid="true"', r.text) == [field]
    no_output = console.post(f"/console/apps/{app_id}/jobs/mix", _mix_form(""))
    assert no_output.status_code == 400 and "RTC.00001005" in no_output.text
    r = console.post(f"/console/apps/{app_id}/jobs/mix", _mix_form(rule, layout_template="screen_share_left"))
    assert r.status_code == 303
    jobs = [j for j in console.get(f"/console/apps/{app_id}/jobs").text.split("<tr")[1:] if "room7" in j]  # rows
    assert len(jobs) == 1 and "mixed" in jobs[0]
    job_id = re.search(r"<code>([0-9a-f]{32})</code>", jobs[0]).group(1)  # type: ignore[union-attr]
    job = api.get(f"/v2/apps/{app_id}/mix-stream-jobs/{job_id}").json()
    assert job["mix_param"]["layout_template"] == "screen_share_left"
    assert job["mix_param"]["encode_template"] == "1280x720_15_2260"
    assert job["record_param"]["record_rule_id"] == rule


def _mixed_job_in_room_far(console: Console, api: httpx.Client, app_id: str, tenant: TenantInfo) -> str:
    """A mixed job started from the console for room ``far``, where nobody publishes; its ID."""
    rule = create_rule(api, app_id, mp4_rule(bucket="recordings", project_id=tenant.project_id))["rule_id"]
    assert console.post(f"/console/apps/{app_id}/jobs/mix", _mix_form(rule, room_id="far")).status_code == 303
    (job_id,) = re.findall(r'/jobs/([0-9a-f]{32})/stop"', console.get(f"/console/apps/{app_id}/jobs").text)
    return str(job_id)


def test_a_mixed_jobs_preview_names_the_node_that_mixes_it(
    console: Console, server: ServerThread, api: httpx.Client, app_id: str, tenant: TenantInfo
) -> None:
    job_id = _mixed_job_in_room_far(console, api, app_id, tenant)
    preview = f"/console/apps/{app_id}/jobs/{job_id}/preview.jpg"
    # Nobody publishes yet: no picture, and the page says why.
    page = console.get(f"/console/apps/{app_id}/jobs").text
    assert "No picture yet" in page and preview not in page
    missing = console.get(preview)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/plain")
    # The room runs on another node of the cluster (its media plane, so its mixing): the page names it.
    room = Room(room_uid="r" * 32, app_id=app_id, room_id="far", state="RUNNING", start_time=server.clock.now(),
                node_id="node-b")  # fmt: skip
    assert server.services is not None
    server.call(server.services.db.run(lambda s: s.add(room)))
    page = console.get(f"/console/apps/{app_id}/jobs").text
    assert "Preview on node <code>node-b</code>" in page and preview not in page
    assert console.get(preview).status_code == 404  # this node has no picture of it
    # Another job ID, or another app's job: the API's errors, never a picture.
    other = console.get(f"/console/apps/{app_id}/jobs/{'0' * 32}/preview.jpg")
    assert other.status_code == 404 and "RTC.00001008" in other.text
    elsewhere = console.get(f"/console/apps/{'1' * 32}/jobs/{job_id}/preview.jpg")
    assert elsewhere.status_code == 404 and "RTC.00001015" in elsewhere.text
    # Stopped: no preview at all.
    assert console.post(f"/console/apps/{app_id}/jobs/{job_id}/stop", {"kind": "mix"}).status_code == 303
    assert "Live previews" not in console.get(f"/console/apps/{app_id}/jobs").text


def test_in_a_cluster_the_page_shows_a_preview_composed_on_another_node(
    console: Console, server: ServerThread, api: httpx.Client, app_id: str, tenant: TenantInfo
) -> None:
    """The room runs on node-b (a second node on the real Redis): this node's page shows its picture,
    fetched from node-b by the preview route, and says where it is mixed; node-b gone, no picture."""
    job_id = _mixed_job_in_room_far(console, api, app_id, tenant)
    preview = f"/console/apps/{app_id}/jobs/{job_id}/preview.jpg"
    room = Room(room_uid="f" * 32, app_id=app_id, room_id="far", state="RUNNING", start_time=server.clock.now(),
                node_id="node-b")  # fmt: skip
    assert server.services is not None
    services = server.services
    server.call(services.db.run(lambda s: s.add(room)))
    jpeg = _jpeg()
    keys = Keyspace(f"test-{secrets.token_hex(6)}")

    async def join_node_b() -> tuple[Redis, Redis, RoomCalls, Subscriber]:
        here, there = redis_client(), redis_client()
        try:
            await here.ping()
        except (RedisError, OSError):
            await here.aclose()
            await there.aclose()
            return None  # type: ignore[return-value]
        await there.hset(keys.node("node-b"), mapping={"public_url": "http://node-b.example:8080"})  # type: ignore[misc]
        await there.expire(keys.node("node-b"), 60)
        await there.set(keys.room(app_id, "far"), "node-b")
        b_calls = RoomCalls(there, keys, "node-b")
        RoutedPreviews(LocalPreviews(lambda a, r, j: jpeg if (a, r, j) == (app_id, "far", job_id) else None), b_calls)
        subscriber = Subscriber(there, poll=0.2)
        subscriber.on(b_calls.channel, b_calls.received)
        await subscriber.start()
        services.previews = RoutedPreviews(LocalPreviews(None), RoomCalls(here, keys, services.settings.node_id))
        return here, there, b_calls, subscriber

    joined = server.call(join_node_b())
    if joined is None:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {REDIS_URL}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    here, there, b_calls, subscriber = joined
    try:
        page = console.get(f"/console/apps/{app_id}/jobs").text
        assert preview in page and "mixed on node <code>node-b</code>" in page
        assert "Open the console on that node" not in page
        got = console.get(preview)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg" and got.content == jpeg
        # Node-b gone (it takes no calls): no picture, at once.
        server.call(subscriber.close())
        started = time.monotonic()
        assert console.get(preview).status_code == 404
        assert time.monotonic() - started < 5
    finally:
        services.previews = LocalPreviews(None)

        async def leave() -> None:
            await subscriber.close()
            await b_calls.close()
            found = [k async for k in there.scan_iter(match=keys.prefix + "*")]
            if found:
                await there.delete(*found)
            await here.aclose()
            await there.aclose()

        server.call(leave())


def _jpeg() -> bytes:
    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = 64, 36, "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    frame = av.VideoFrame(64, 36, "yuvj420p")
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


def _panes(*rows: dict[str, str]) -> list[tuple[str, str]]:
    """The panes editor's fields, row by row (every row sends every field, as the page's rows do)."""
    blank = {"user_id": "", "video_type": "CAMERASTREAM", "x": "", "y": "", "width": "", "height": "", "zorder": "",
             "crop_mode": "KEEP_RATIO_CROP"}  # fmt: skip
    return [(f"pane_{k}", v) for row in rows for k, v in {**blank, **row}.items()]


def test_a_custom_layout_from_the_panes_editor(
    console: Console, api: httpx.Client, app_id: str, tenant: TenantInfo
) -> None:
    page = console.get(f"/console/apps/{app_id}/jobs").text
    assert 'value="custom"' in page and 'id="pane-rows"' in page
    assert page.count('name="pane_user_id"') == 2  # one blank row, and the script's template row
    rule = api.post(
        f"/v2/apps/{app_id}/record-rules",
        json={
            "obs_addr": {"location": "cn-north-4", "project_id": tenant.project_id, "bucket": "recordings"},
            "record_formats": ["MP4"],
            "mp4_config": {"record_cycle": 60},
        },
    ).json()["rule_id"]
    form = list(_mix_form(rule, layout_template="custom", room_id="room9").items())

    def api_error(panes: list[dict[str, object]]) -> dict[str, str]:
        mix = {"room_id": "room9", "encode_template": "1280x720_15_2260", "layout_template": "custom",
               "layout_panes": panes}  # fmt: skip
        body = api.post(
            f"/v2/apps/{app_id}/mix-stream-jobs", json={"mix_param": mix, "record_param": {"record_rule_id": rule}}
        )
        assert body.status_code == 400
        return body.json()  # type: ignore[no-any-return]

    def editor(text: str) -> str:
        return text.split('id="panes"', 1)[1].split('</fieldset>\n  <div class="field', 1)[0]

    # No pane (only the blank row): the domain's rule, in the editor.
    r = console.post(f"/console/apps/{app_id}/jobs/mix", form + _panes({}))
    expected = api_error([])
    assert r.status_code == 400 and 'id="panes-error"' in r.text
    assert expected["error_code"] in editor(r.text) and expected["error_msg"] in html.unescape(editor(r.text))
    # A value out of range: the API's error next to that field of that row; the rows come back as typed.
    alice = {"user_id": "alice", "x": "0", "y": "0", "width": "0.5", "height": "1"}
    bob = {"user_id": "bob", "x": "1.5", "y": "0", "width": "0.5", "height": "1", "zorder": "1"}
    r = console.post(f"/console/apps/{app_id}/jobs/mix", form + _panes(alice, bob, {}))
    expected = api_error([alice, {**bob, "x": 1.5}])
    assert r.status_code == 400 and expected["error_msg"] in html.unescape(r.text)
    assert re.findall(r'id="([^"]+)"[^>]*aria-invalid="true"', r.text) == ["pane-1-x"]
    assert 'id="pane-0-user_id" name="pane_user_id" value="alice"' in r.text and 'value="1.5"' in r.text
    assert 'id="panes-error"' not in r.text  # shown in its row, not again for the whole editor
    # A pane without its height: the layout rule's error (the same as the API's), in the editor.
    r = console.post(f"/console/apps/{app_id}/jobs/mix", form + _panes({**alice, "height": ""}))
    expected = api_error([{k: v for k, v in alice.items() if k != "height"}])
    assert r.status_code == 400 and expected["error_msg"] in html.unescape(editor(r.text))
    # Two panes and a blank row: the job has exactly the two, with their types and fits.
    bob = {**bob, "x": "0.5", "video_type": "SCREENSTREAM", "crop_mode": "KEEP_RATIO_PADDING"}
    r = console.post(f"/console/apps/{app_id}/jobs/mix", form + _panes(alice, bob, {}))
    assert r.status_code == 303, r.text
    (job_id,) = re.findall(r'/jobs/([0-9a-f]{32})/stop"', console.get(f"/console/apps/{app_id}/jobs").text)
    job = api.get(f"/v2/apps/{app_id}/mix-stream-jobs/{job_id}").json()
    assert job["mix_param"]["layout_template"] == "custom"
    panes = [{k: v for k, v in p.items() if v is not None} for p in job["mix_param"]["layout_panes"]]
    assert panes == [
        {"user_id": "alice", "video_type": "CAMERASTREAM", "x": 0, "y": 0, "width": 0.5, "height": 1,
         "crop_mode": "KEEP_RATIO_CROP"},
        {"user_id": "bob", "video_type": "SCREENSTREAM", "x": 0.5, "y": 0, "width": 0.5, "height": 1, "zorder": 1,
         "crop_mode": "KEEP_RATIO_PADDING"},
    ]  # fmt: skip
