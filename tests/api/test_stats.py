"""The statistics API (spec section 5) over plain HTTP: every operation's answers read back against the
rows behind them, and every section-5 error path. Joins go through the media plane's session records
(``RoomSessionService``, as signalling does); the statistics rows (roll-ups, samples, events) are
written as the statistics writer writes them. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from emberrtc.domain.errors import Unauthenticated
from emberrtc.domain.room_session import JoinRequest, join_signature
from emberrtc.domain.usage import record_file
from emberrtc.store.models import AbnormalEvent, QosSample, Room, SessionStats, StatsDay, StatsMark, StatsMinute
from tests.api.test_ratelimit import assert_throttled, calls_until_throttled, limited  # noqa: F401 - fixture
from tests.support.server import ServerThread
from tests.support.spec_checks import assert_ok, create_app, unique

P = "/v1/{p}/rtc/"


def _t(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(ts: float, delta: int = 0) -> str:
    return (datetime.fromtimestamp(ts, UTC).date() + timedelta(days=delta)).isoformat()


def _write(server: ServerThread, rows: list[Any]) -> None:
    assert server.services is not None
    server.call(server.services.db.run(lambda s: s.add_all(rows)))


def _minute_row(app: str, minute: int, room: str, sdk: str, **counts: Any) -> StatsMinute:
    zero = {c.key: 0 for c in StatsMinute.__table__.columns if c.key not in ("id", "app_id", "room_id", "sdk_type")}
    zero.update(minute=minute, **counts)
    return StatsMinute(app_id=app, room_id=room, sdk_type=sdk, **zero)


def _day_row(app: str, day: str, **counts: Any) -> StatsDay:
    zero = {c.key: 0 for c in StatsDay.__table__.columns if c.key not in ("id", "app_id", "day")}
    zero.update(counts)
    return StatsDay(app_id=app, day=day, **zero)


def _mark_minutes(server: ServerThread, until: float) -> None:
    assert server.services is not None

    def work(s: Any) -> None:
        mark = s.get(StatsMark, "minutes")
        if mark is None:
            s.add(StatsMark(name="minutes", done_until=until))
        else:
            mark.done_until = max(mark.done_until, until)

    server.call(server.services.db.run(work))


# --- section 5 errors ------------------------------------------------------------------------------------

ALL_OPERATIONS = [
    (P + "rooms", "app"),
    (P + "users", "app"),
    (P + "realtime/scale", "app"),
    (P + "realtime/scale/dimension", "app"),
    (P + "realtime/quality", "app"),
    (P + "realtime/network", "app"),
    (P + "history/usage", "app"),
    (P + "history/scale", "app"),
    (P + "history/quality", "app"),
    (P + "client/qos/details", "app_id"),
    ("/v1/rtc/data/abnormal-events", "app"),
    ("/v1/rtc/data/abnormal-event/dimension", "app"),
]


@pytest.mark.parametrize(("path", "name"), ALL_OPERATIONS)
def test_missing_app_is_data_100011001(http: httpx.Client, tenant, path: str, name: str) -> None:
    r = http.get(path.format(p=tenant.project_id))
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error_code": "DATA.100011001",
        "error_msg": f"Required String parameter '{name}' is not present",
    }
    assert r.headers["X-request-Id"]


def test_missing_other_required_parameters(http: httpx.Client, tenant) -> None:
    app = create_app(http)
    p = tenant.project_id
    cases = [
        (f"/v1/{p}/rtc/realtime/scale?app={app}", "metric"),
        (f"/v1/{p}/rtc/realtime/quality?app={app}&metric=JoinSuccessRate", "sdk_type"),
        (f"/v1/{p}/rtc/realtime/scale/dimension?app={app}&metric=OnlineUsers&time=2024-01-01T00:00:00Z", "dimension"),
        (f"/v1/{p}/rtc/realtime/scale/dimension?app={app}&metric=OnlineUsers&dimension=region", "time"),
        (f"/v1/{p}/rtc/history/usage?app={app}&metric=RecordDuration&end_date=2024-01-01", "start_date"),
        (f"/v1/{p}/rtc/history/scale?app={app}", "metric"),
        (f"/v1/{p}/rtc/client/qos/details?app_id={app}&mid=all", "room_id"),
        (f"/v1/{p}/rtc/client/qos/details?app_id={app}&room_id=r1", "mid"),
        (f"/v1/{p}/rtc/client/qos/details?app_id={app}&room_id=r1&mid=all", "start_time"),
    ]
    for url, name in cases:
        r = http.get(url)
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error_code"] == "DATA.100011001", url
        assert r.json()["error_msg"] == f"Required String parameter '{name}' is not present"


def test_bad_values_spans_and_paging(http: httpx.Client, tenant, server: ServerThread) -> None:
    app = create_app(http)
    p = tenant.project_id
    now = server.clock.now()
    old = now - 6 * 86400
    qos = f"/v1/{p}/rtc/client/qos/details?app_id={app}&room_id=r"
    last_minute = f"&start_time={_t(now - 60)}&end_time={_t(now)}"
    bad = [
        f"/v1/{p}/rtc/rooms?app={app}&start_time=2024-01-01 00:00:00",  # not YYYY-MM-DDThh:mm:ssZ
        f"/v1/{p}/rtc/rooms?app={app}&start_time=2024-13-01T00:00:00Z",  # no such month
        f"/v1/{p}/rtc/rooms?app={app}&start_time=2024-01-01T00:00:00Z&end_time=2024-04-01T00:00:01Z",  # > 90 days
        f"/v1/{p}/rtc/rooms?app={app}&start_time=2024-01-02T00:00:00Z&end_time=2024-01-01T00:00:00Z",  # reversed
        f"/v1/{p}/rtc/rooms?app={app}&limit=0",
        f"/v1/{p}/rtc/rooms?app={app}&limit=abc",
        f"/v1/{p}/rtc/rooms?app={app}&offset=-1",
        f"/v1/{p}/rtc/rooms?app={app}&state=OPEN",
        f"/v1/{p}/rtc/users?app={app}&type=all",
        f"/v1/{p}/rtc/users?app={app}&region=Atlantis",
        f"/v1/{p}/rtc/users?app={app}&state=ONLINE,GONE",
        f"/v1/{p}/rtc/realtime/scale?app={app}&metric=Users",
        f"/v1/{p}/rtc/realtime/scale?app={app}&metric=OnlineUsers&start_time={_t(now - 86401)}&end_time={_t(now)}",
        f"/v1/{p}/rtc/realtime/quality?app={app}&metric=JoinSuccessRate&sdk_type=ios",
        f"/v1/{p}/rtc/realtime/network?app={app}&metric=JoinSuccessRate&sdk_type=native",
        f"/v1/{p}/rtc/realtime/scale/dimension?app={app}&metric=OnlineUsers&dimension=isp&time={_t(now)}",
        f"/v1/{p}/rtc/history/usage?app={app}&metric=RecordDuration&start_date=2024-01-01&end_date=2024-02-01",
        f"/v1/{p}/rtc/history/usage?app={app}&metric=RecordDuration&start_date=2024/01/01&end_date=2024-01-02",
        f"/v1/{p}/rtc/history/scale?app={app}&metric=UserCount,Nope",
        f"/v1/{p}/rtc/history/quality?app={app}&metric=VideoFreezeRate&start_date=2024-01-01&end_date=2024-02-01",
        f"{qos}&mid=vfps,cpu{last_minute}",
        f"{qos}&mid=all&start_time={_t(old)}&end_time={_t(old + 60)}",  # older than 5 days
        f"{qos}&mid=all&start_time={_t(now - 90000)}&end_time={_t(now)}",  # more than 24 h
        f"{qos}&mid=all&direction=up{last_minute}",
        f"/v1/rtc/data/abnormal-events?app={app}&start_time={_t(now - 86401)}&end_time={_t(now)}",
        f"/v1/rtc/data/abnormal-event/dimension?app={app}&dimension=room",
        f"/v1/{p}/rtc/rooms?app=../etc",
    ]
    for url in bad:
        r = http.get(url)
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error_code"] == "RTC.00001003", (url, r.text)
    # an app of nobody (or of another tenant) is 404 as everywhere
    r = http.get(f"/v1/{p}/rtc/rooms?app={'f' * 32}")
    assert r.status_code == 404 and r.json()["error_code"] == "RTC.00001015"


def test_default_window_is_the_last_hour(http: httpx.Client, tenant, server: ServerThread) -> None:
    app, p = create_app(http), tenant.project_id
    now = server.clock.now()
    old = Room(
        room_uid=unique("u"), app_id=app, room_id="old", state="CLOSED", start_time=now - 7200, end_time=now - 5400
    )
    old.duration = 1800
    long = Room(room_uid=unique("u"), app_id=app, room_id="long", state="RUNNING", start_time=now - 7200)
    _write(server, [old, long])
    listed = assert_ok(http.get(f"/v1/{p}/rtc/rooms?app={app}"))["room_info_list"]
    assert [(r["room_id"], r["state"], r["end_time"]) for r in listed] == [("long", "RUNNING", "-")]
    assert listed[0]["duration"] >= 7200  # running for two hours: still listed, with its time so far
    window = f"&start_time={_t(now - 7300)}&end_time={_t(now - 5000)}"
    both = assert_ok(http.get(f"/v1/{p}/rtc/rooms?app={app}{window}"))["room_info_list"]
    assert {r["room_id"]: r["duration"] for r in both}["old"] == 1800


def test_reference_spellings_are_aliases(http: httpx.Client, tenant) -> None:
    app = create_app(http)
    for path in ("realtimetime/scale", "realtme/scale", "realtimedata"):
        body = assert_ok(http.get(f"/v1/{tenant.project_id}/rtc/{path}?app={app}&metric=RoomCount"))
        assert "scale" in body


# --- rooms and users -------------------------------------------------------------------------------------


def test_rooms_and_users_match_the_joins(http: httpx.Client, tenant, server: ServerThread) -> None:
    assert server.services is not None
    rs = server.services.room_sessions
    app, room, other = create_app(http), unique("r"), unique("r")
    p = tenant.project_id
    key = assert_ok(http.get(f"/v2/apps/{app}"))["authentication"]["app_key"]
    ctime = str(int(server.clock.now()) + 3600)

    def join(room_id: str, user: str, **more: Any) -> JoinRequest:
        sig = join_signature(key, app, room_id, user, ctime)
        return JoinRequest(app, room_id, user, ctime=ctime, signature=sig, **more)

    a = server.call(rs.admit(join(room, "alice", nickname="Al", platform="web-Linux", sdk_version="1.0")))
    b = server.call(rs.admit(join(room, "bob", platform="python", sdk_version="0.1")))
    server.call(rs.leave(b.session_id, "left"))
    server.clock.advance(1)
    b2 = server.call(rs.admit(join(room, "bob")))
    server.call(rs.leave(b2.session_id, "left"))
    c = server.call(rs.admit(join(other, "carol")))
    server.call(rs.leave(c.session_id, "left"))
    _write(
        server,
        [
            SessionStats(
                session_id=a.session_id,
                app_id=app,
                room_id=room,
                user_id="alice",
                join_time=server.clock.now(),
                ok=True,
                sdk_type="webrtc",
                access_net="wifi",
                region="GD",
                isp="CTCC",
            )
        ],
    )

    rooms = assert_ok(http.get(f"/v1/{p}/rtc/rooms?app={app}"))
    assert rooms["total"] == 2 and rooms["offset"] == 0 and rooms["limit"] == 10
    by_id = {r["room_id"]: r for r in rooms["room_info_list"]}
    assert by_id[room]["state"] == "RUNNING" and by_id[room]["end_time"] == "-"
    assert by_id[other]["state"] == "CLOSED" and by_id[other]["end_time"] != "-"
    assert by_id[room]["app"] == app and by_id[room]["domain"]
    closed = assert_ok(http.get(f"/v1/{p}/rtc/rooms?app={app}&state=CLOSED"))
    assert [r["room_id"] for r in closed["room_info_list"]] == [other]
    paged = assert_ok(http.get(f"/v1/{p}/rtc/rooms?app={app}&limit=1&offset=1"))
    assert paged["total"] == 2 and len(paged["room_info_list"]) == 1

    summary = assert_ok(http.get(f"/v1/{p}/rtc/users?app={app}&room_id={room}"))
    users = {u["uid"]: u for u in summary["users"]}
    assert summary["total"] == 2 and set(users) == {"alice", "bob"}  # bob's two sessions are one user
    assert users["alice"]["state"] == "ONLINE" and users["alice"]["leave_time"] == "-"
    assert users["alice"]["region"] == "GD" and users["alice"]["isp"] == "CTCC" and users["alice"]["nick_name"] == "Al"
    assert users["alice"]["session"] == a.session_id and users["alice"]["platform"] == "web-Linux"
    assert users["bob"]["state"] == "OFFLINE" and users["bob"]["session"] == b2.session_id
    assert users["bob"]["region"] == "OT"  # no address known: Others

    detail = assert_ok(http.get(f"/v1/{p}/rtc/users?app={app}&type=detail"))
    assert detail["total"] == 4
    assert {u["session"] for u in detail["users"]} == {a.session_id, b.session_id, b2.session_id, c.session_id}
    only = assert_ok(http.get(f"/v1/{p}/rtc/users?app={app}&type=detail&state=OFFLINE&uid=bob"))
    assert only["total"] == 2 and all(u["state"] == "OFFLINE" for u in only["users"])
    gd = assert_ok(http.get(f"/v1/{p}/rtc/users?app={app}&region=Guangdong"))
    assert [u["uid"] for u in gd["users"]] == ["alice"]
    assert assert_ok(http.get(f"/v1/{p}/rtc/users?app={app}&isp=CMCC"))["total"] == 0
    assert assert_ok(http.get(f"/v1/{p}/rtc/users?app={app}&nickname=Al"))["total"] == 1
    # a refused join is a FAIL user
    with pytest.raises(Unauthenticated):  # no signature: refused, recorded as FAIL
        server.call(rs.admit(JoinRequest(app, room, "dave")))
    failed = assert_ok(http.get(f"/v1/{p}/rtc/users?app={app}&state=FAIL"))
    assert [(u["uid"], u["state"]) for u in failed["users"]] == [("dave", "FAIL")]

    # the distribution at one moment: alice (GD) is the one user online
    dims = assert_ok(
        http.get(
            f"/v1/{p}/rtc/realtime/scale/dimension?app={app}&metric=OnlineUsers&dimension=region"
            f"&time={_t(server.clock.now() + 1)}"
        )
    )
    assert dims["dimensions"] == [{"dimension": "GD", "online_users": 1}]
    net = assert_ok(
        http.get(
            f"/v1/{p}/rtc/realtime/scale/dimension?app={app}&metric=OnlineUsers&dimension=access_net"
            f"&time={_t(server.clock.now() + 1)}"
        )
    )
    assert net["dimensions"] == [{"dimension": "wifi", "online_users": 1}]


# --- real-time series ------------------------------------------------------------------------------------


def test_realtime_series(http: httpx.Client, tenant, server: ServerThread) -> None:
    app, p = create_app(http), tenant.project_id
    base = int(server.clock.now() // 60) * 60 - 600  # ten minutes ago
    _write(
        server,
        [
            _minute_row(app, base, "r1", "webrtc", online_users=3, join_attempts=4, join_ok=3, join_ok_5s=2),
            _minute_row(app, base, "r2", "native", online_users=2, join_attempts=1, join_ok=1, join_ok_5s=1),
            _minute_row(
                app,
                base + 120,
                "r1",
                "webrtc",
                online_users=1,
                video_recv_s=60.0,
                video_freeze_s=3.0,
                video_up_samples=10,
                video_up_excellent=7,
            ),
        ],
    )
    _mark_minutes(server, base + 300)
    window = f"&start_time={_t(base)}&end_time={_t(base + 600)}"
    users = assert_ok(http.get(f"/v1/{p}/rtc/realtime/scale?app={app}&metric=OnlineUsers{window}"))["scale"]
    assert users[0] == {"time": _t(base), "value": 5}
    assert users[1] == {"time": _t(base + 60), "value": 0}  # rolled up, nobody online
    assert users[2] == {"time": _t(base + 120), "value": 1}
    # every minute up to the last one the roll-up finished, none beyond it
    assert [u["time"] for u in users] == [_t(base + 60 * i) for i in range(len(users))]
    assert 5 <= len(users) <= 11
    rooms = assert_ok(http.get(f"/v1/{p}/rtc/realtime/scale?app={app}&metric=RoomCount{window}"))["scale"]
    assert [v["value"] for v in rooms[:3]] == [2, 0, 1]
    one = assert_ok(http.get(f"/v1/{p}/rtc/realtime/scale?app={app}&metric=OnlineUsers&room_id=r2{window}"))
    assert one["scale"][0]["value"] == 2

    q = f"/v1/{p}/rtc/realtime/quality?app={app}{window}"
    web = assert_ok(http.get(q + "&metric=JoinSuccessRate&sdk_type=webrtc"))["quality"]
    assert web == [{"time": _t(base), "value": 0.75}]
    native = assert_ok(http.get(q + "&metric=JoinSuccessRate&sdk_type=native"))["quality"]
    assert native == [{"time": _t(base), "value": 1.0}]
    assert assert_ok(http.get(q + "&metric=JoinSuccess5SecsRate&sdk_type=webrtc"))["quality"][0]["value"] == 0.5
    freeze = assert_ok(http.get(q + "&metric=VideoFreezeRate&sdk_type=webrtc"))["quality"]
    assert freeze == [{"time": _t(base + 120), "value": 0.05}]
    assert assert_ok(http.get(q + "&metric=AudioFreezeRate&sdk_type=webrtc"))["quality"] == []
    n = f"/v1/{p}/rtc/realtime/network?app={app}{window}&sdk_type=webrtc"
    up = assert_ok(http.get(n + "&metric=VideoUpstreamExcellentTransRate"))["network"]
    assert up == [{"time": _t(base + 120), "value": 0.7}]


# --- usage and history -----------------------------------------------------------------------------------


def test_usage_counts_recorded_seconds_by_tier(http: httpx.Client, tenant, server: ServerThread) -> None:
    assert server.services is not None
    app, p = create_app(http), tenant.project_id
    now = server.clock.now()
    day_start = now - now % 86400

    def files(s: Any) -> None:
        for i, (w, h, secs, transcoded) in enumerate(
            [(640, 480, 100.0, False), (1280, 720, 50.0, True), (1920, 1080, 30.0, True), (None, None, 20.0, False)]
        ):
            record_file(
                s,
                app_id=app,
                job_id=f"job{i}",
                object_name=f"f{i}.mp4",
                record_format="MP4",
                start_time=day_start + 10,
                end_time=day_start + 10 + secs,
                transcoded=transcoded,
                width=w,
                height=h,
                now=now,
            )

    server.call(server.services.db.run(files))
    _write(server, [_day_row(app, _day(now, -1), comm_sd_s=10.0, comm_hd_s=20.0, comm_uhd_s=5.0, comm_audio_s=7.0)])
    q = f"/v1/{p}/rtc/history/usage?app={app}&start_date={_day(now, -1)}&end_date={_day(now)}"
    rec = assert_ok(http.get(q + "&metric=RecordDuration"))["usage"]
    assert rec[0] == {
        "date": _day(now, -1),
        "video_sd": 0,
        "video_hd": 0,
        "video_hdp": 0,
        "audio": 0,
        "total_duration": 0,
    }
    assert rec[1] == {
        "date": _day(now),
        "video_sd": 100,
        "video_hd": 50,
        "video_hdp": 30,
        "audio": 20,
        "total_duration": 200,
    }
    tr = assert_ok(http.get(q + "&metric=TranscodeDuration"))["usage"][1]
    assert (tr["video_sd"], tr["video_hd"], tr["video_hdp"], tr["total_duration"]) == (0, 50, 30, 80)
    comm = assert_ok(http.get(q + "&metric=CommunicationDuration"))["usage"][0]
    assert comm == {
        "date": _day(now, -1),
        "video_sd": 10,
        "video_hd": 20,
        "video_hdp": 5,
        "audio": 7,
        "total_duration": 42,
    }


def test_history_excludes_today(http: httpx.Client, tenant, server: ServerThread) -> None:
    app, p = create_app(http), tenant.project_id
    now = server.clock.now()
    _write(
        server,
        [
            _day_row(
                app,
                _day(now, -2),
                user_count=3,
                session_count=5,
                room_count=2,
                max_online_users=3,
                max_online_rooms=2,
                comm_sd_s=60.0,
                comm_audio_s=40.0,
                join_attempts=5,
                join_ok=4,
                join_ok_5s=3,
                first_video_ms_sum=900.0,
                first_video_n=3,
                video_rtt_sum=300.0,
                video_rtt_n=6,
            ),
            _day_row(app, _day(now), user_count=99, session_count=99),  # today: never shown
        ],
    )
    q = f"/v1/{p}/rtc/history/scale?app={app}&start_date={_day(now, -2)}&end_date={_day(now)}"
    scale = assert_ok(http.get(q + "&metric=UserCount,SessionCount,CommunicationDuration,AudioCommunicationDuration"))
    assert [d["date"] for d in scale["scale"]] == [_day(now, -2), _day(now, -1)]
    assert scale["scale"][0] == {
        "date": _day(now, -2),
        "user_count": 3,
        "session_count": 5,
        "communication_duration": 100,
        "audio_communication_duration": 40,
    }
    assert scale["scale"][1]["user_count"] == 0
    every = ",".join(
        [
            "RoomCount",
            "MaxOnlineUserCount",
            "MaxOnlineRoomCount",
            "VideoCommunicationDuration",
        ]
    )
    more = assert_ok(http.get(f"/v1/{p}/rtc/history/scale?app={app}&metric={every}&start_date={_day(now, -2)}"))
    assert more["scale"][0]["room_count"] == 2 and more["scale"][0]["max_online_room_count"] == 2
    assert more["scale"][0]["video_communication_duration"] == 60
    qual = assert_ok(
        http.get(
            f"/v1/{p}/rtc/history/quality?app={app}&start_date={_day(now, -2)}&end_date={_day(now, -2)}"
            "&metric=JoinSuccessRate&metric=JoinSuccess5SecsRate,FirstVideoRecvTime,VideoTransDelay,AudioFreezeRate"
        )
    )["quality"]
    assert qual == [
        {
            "date": _day(now, -2),
            "join_success_rate": 0.8,
            "join_success_in5secs_rate": 0.6,
            "first_video_recv_time": 300,
            "video_trans_delay": 50.0,
        }
    ]  # no audio received that day: no AudioFreezeRate rather than an invented 0
    # by default: yesterday only
    assert [
        d["date"] for d in assert_ok(http.get(f"/v1/{p}/rtc/history/scale?app={app}&metric=UserCount"))["scale"]
    ] == [_day(now, -1)]


# --- QoS details and abnormal events ---------------------------------------------------------------------


def _sample(app: str, room: str, t: float, user: str, peer: str, source: str, **values: Any) -> QosSample:
    return QosSample(
        time=t,
        ctime=t - 0.5,
        app_id=app,
        room_id=room,
        user_id=user,
        peer_id=peer,
        direction="uplink" if peer == "0" else "downlink",
        source=source,
        sdk_type="native",
        interval_s=5.0,
        **values,
    )


def test_qos_details(http: httpx.Client, tenant, server: ServerThread) -> None:
    app, p, room = create_app(http), tenant.project_id, unique("r")
    now = server.clock.now()
    _write(
        server,
        [
            _sample(app, room, now - 20, "alice", "0", "client", vbit=800.0, vfps=30.0, vwidth=640),
            _sample(app, room, now - 15, "alice", "0", "client", vbit=820.0, vfps=29.0, vwidth=640),
            _sample(app, room, now - 15, "alice", "0", "janus", vbit=810.0, vloss=0.0),
            _sample(app, room, now - 15, "bob", "alice", "client", vloss=0.2, aloss=0.1, vbit=700.0),
            _sample(app, room, now - 15, "carol", "alice", "janus", vloss=0.05),
        ],
    )
    base = f"/v1/{p}/rtc/client/qos/details?app_id={app}&room_id={room}&start_time={_t(now - 60)}&end_time={_t(now)}"
    body = assert_ok(http.get(base + "&mid=all"))
    assert body["room_id"] == room
    series = {(d["uid"], d["peerid"], d["mid"]): [v["value"] for v in d["data"]] for d in body["data"]}
    assert series[("alice", "0", "vbit")] == [800.0, 820.0]  # the client's samples, not the SFU's copy
    assert ("alice", "0", "vloss") not in series
    assert series[("bob", "alice", "vloss")] == [0.2] and series[("bob", "alice", "aloss")] == [0.1]
    assert series[("carol", "alice", "vloss")] == [0.05]  # only the SFU measured carol's leg
    down = assert_ok(http.get(base + "&mid=vloss,aloss&direction=downlink&peer_id=alice&user_id=bob"))["data"]
    assert {(d["uid"], d["mid"]) for d in down} == {("bob", "vloss"), ("bob", "aloss")}
    assert len(assert_ok(http.get(base + "&mid=all&limit=2"))["data"]) == 2


def test_abnormal_events_and_distribution(http: httpx.Client, tenant, server: ServerThread) -> None:
    app, room = create_app(http), unique("r")
    now = server.clock.now()

    def event(t: float, user: str, kind: int, factor: int, peer: str = "") -> AbnormalEvent:
        return AbnormalEvent(
            time=t,
            app_id=app,
            room_id=room,
            user_id=user,
            stage="join_room" if kind == 1 else "communication",
            location="remote" if peer else "local",
            peer_uid=peer,
            abnormal_type=kind,
            abnormal_factor=factor,
        )

    _write(
        server,
        [
            event(now - 30, "bob", 2, 14, "alice"),
            event(now - 20, "bob", 2, 14, "alice"),
            event(now - 20, "carol", 2, 14, "alice"),
            event(now - 10, "bob", 3, 13, "alice"),
            event(now - 5, "dave", 1, 1),
            event(now - 7200, "old", 2, 14, "alice"),  # before the default last hour
        ],
    )
    events = assert_ok(http.get(f"/v1/rtc/data/abnormal-events?app={app}"))
    assert events["total"] == 5 and len(events["events"]) == 5
    first = events["events"][0]
    assert first["uid"] == "dave" and first["abnormal_type"] == 1 and first["stage"] == "join_room"
    assert first["abnormal_type_desc"] == "It takes a long time to enter a room (longer than 5s)."
    assert first["abnormal_factor_desc"] == "Link setup failure"
    loss = events["events"][1]
    assert (loss["abnormal_type"], loss["abnormal_factor"]) == (3, 13)
    assert loss["abnormal_factor_desc"] == "Downlink audio packet loss" and loss["peer_uid"] == "alice"
    bob = assert_ok(http.get(f"/v1/rtc/data/abnormal-events?app={app}&uid=bob&limit=2&offset=1"))
    assert bob["total"] == 3 and len(bob["events"]) == 2
    dims = assert_ok(http.get(f"/v1/rtc/data/abnormal-event/dimension?app={app}&room_id={room}"))["dimensions"]
    assert dims[0] == {
        "abnormal_type": 2,
        "abnormal_type_desc": "Video freezing",
        "abnormal_factor": 14,
        "abnormal_factor_desc": "Downlink video packet loss",
        "user_count": 2,
    }
    by_type = assert_ok(http.get(f"/v1/rtc/data/abnormal-event/dimension?app={app}&dimension=abnormal_type"))
    assert {(d["abnormal_type"], d["user_count"]) for d in by_type["dimensions"]} == {(2, 2), (3, 1), (1, 1)}


def test_statistics_need_credentials(server: ServerThread) -> None:
    r = httpx.get(f"{server.url}/v1/abc/rtc/realtime/quality")
    assert r.status_code == 401
    assert r.json()["error_code"] == "RTC.00001001"


def test_project_in_the_path_must_be_the_callers(http: httpx.Client) -> None:
    app = create_app(http)
    r = http.get(f"/v1/{'0' * 32}/rtc/rooms?app={app}")
    assert r.status_code == 401 and r.json()["error_code"] == "RTC.00001001"


def test_sdk_extras_beyond_the_reference_say_not_built(http: httpx.Client, tenant) -> None:
    r = http.get(f"/v1/{tenant.project_id}/rtc/client/event?app_id=x")
    assert r.status_code == 501 and r.json()["error_code"] == "RTC.00002007"


def test_statistics_are_throttled_at_30_a_minute(http: httpx.Client, tenant, limited) -> None:  # noqa: F811
    """spec Table 1-2: the statistics APIs share one budget of 30 requests a minute per tenant."""
    app, p = create_app(http), tenant.project_id
    urls = [f"/v1/{p}/rtc/rooms?app={app}", f"/v1/rtc/data/abnormal-events?app={app}"]
    calls = iter(range(1000))
    n, r = calls_until_throttled(lambda: http.get(urls[next(calls) % 2]))  # both paths, one budget
    assert n == 30
    assert_throttled(r)
    assert http.get(f"/v2/apps/{app}").status_code == 200  # management has its own
    limited(2.0)  # 30 a minute: one more after 2 s
    assert http.get(urls[1]).status_code == 200
    assert http.get(urls[1]).status_code == 429
