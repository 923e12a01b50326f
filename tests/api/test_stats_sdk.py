"""The official SDK's v1 client (``huaweicloudsdkcloudrtc.v1``), unchanged, calls every section-5 operation
of Ember and reads the answers into its own models; its errors carry section 5's codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from huaweicloudsdkcloudrtc.v1 import (
    CloudRTCClient,
    ListRtcAbnormalEventDimensionRequest,
    ListRtcAbnormalEventsRequest,
    ListRtcClientQosDetailsRequest,
    ListRtcHistoryQualityRequest,
    ListRtcHistoryScaleRequest,
    ListRtcHistoryUsageRequest,
    ListRtcRealtimeNetworkRequest,
    ListRtcRealtimeQualityRequest,
    ListRtcRealtimeScaleDimensionRequest,
    ListRtcRealtimeScaleRequest,
    ListRtcRoomListRequest,
    ListRtcUserListRequest,
)
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig

from emberrtc.domain.room_session import JoinRequest, join_signature
from emberrtc.store.models import AbnormalEvent, QosSample, StatsDay
from tests.support.server import ServerThread
from tests.support.spec_checks import assert_ok, create_app, unique


def _v1(server: ServerThread, tenant) -> CloudRTCClient:  # type: ignore[no-untyped-def]
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    return (
        CloudRTCClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(tenant.ak, tenant.sk, tenant.project_id))
        .with_endpoints([server.url])
        .build()
    )


def _t(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_operation_through_the_sdk(server: ServerThread, tenant, http) -> None:  # type: ignore[no-untyped-def]
    assert server.services is not None
    sdk = _v1(server, tenant)
    app, room = create_app(http), unique("r")
    now = server.clock.now()
    yesterday = (datetime.fromtimestamp(now, UTC).date() - timedelta(days=1)).isoformat()
    key = assert_ok(http.get(f"/v2/apps/{app}"))["authentication"]["app_key"]
    ctime = str(int(now) + 3600)
    server.call(
        server.services.room_sessions.admit(
            JoinRequest(app, room, "alice", ctime=ctime, signature=join_signature(key, app, room, "alice", ctime))
        )
    )
    rows = [
        StatsDay(app_id=app, day=yesterday, **_day_counters(user_count=4, join_attempts=2, join_ok=1)),
        QosSample(
            time=now - 10, ctime=now - 10, app_id=app, room_id=room, user_id="bob", peer_id="alice",
            direction="downlink", source="client", sdk_type="webrtc", interval_s=5.0, vloss=0.25,
        ),
        AbnormalEvent(
            time=now - 10, app_id=app, room_id=room, user_id="bob", stage="communication", location="remote",
            peer_uid="alice", abnormal_type=2, abnormal_factor=14,
        ),
    ]  # fmt: skip
    server.call(server.services.db.run(lambda s: s.add_all(rows)))

    rooms = sdk.list_rtc_room_list(ListRtcRoomListRequest(app=app))
    assert rooms.total == 1 and rooms.room_info_list[0].room_id == room and rooms.room_info_list[0].end_time == "-"
    users = sdk.list_rtc_user_list(ListRtcUserListRequest(app=app, state=["ONLINE"], region=["OT"], type="summary"))
    assert [u.uid for u in users.users] == ["alice"] and users.users[0].state == "ONLINE"
    detail = sdk.list_rtc_user_list(ListRtcUserListRequest(app=app, type="detail", limit=5, offset=0))
    assert detail.total == 1 and detail.limit == 5
    scale = sdk.list_rtc_realtime_scale(ListRtcRealtimeScaleRequest(app=app, metric="OnlineUsers"))
    assert isinstance(scale.scale, list)
    dims = sdk.list_rtc_realtime_scale_dimension(
        ListRtcRealtimeScaleDimensionRequest(app=app, metric="OnlineUsers", dimension="region", time=_t(now + 1))
    )
    assert [(d.dimension, d.online_users) for d in dims.dimensions] == [("OT", 1)]
    quality = sdk.list_rtc_realtime_quality(
        ListRtcRealtimeQualityRequest(app=app, metric="JoinSuccessRate", sdk_type="webrtc")
    )
    assert isinstance(quality.quality, list)
    network = sdk.list_rtc_realtime_network(
        ListRtcRealtimeNetworkRequest(app=app, metric="VideoExcellentTransRate", sdk_type="native")
    )
    assert isinstance(network.network, list)
    usage = sdk.list_rtc_history_usage(
        ListRtcHistoryUsageRequest(app=app, metric="RecordDuration", start_date=yesterday, end_date=yesterday)
    )
    assert [(u.date, u.total_duration) for u in usage.usage] == [(yesterday, 0)]
    hscale = sdk.list_rtc_history_scale(
        ListRtcHistoryScaleRequest(app=app, metric=["UserCount", "SessionCount"], start_date=yesterday)
    )
    assert [(d.date, d.user_count, d.session_count) for d in hscale.scale] == [(yesterday, 4, 0)]
    hquality = sdk.list_rtc_history_quality(ListRtcHistoryQualityRequest(app=app, metric=["JoinSuccessRate"]))
    assert [(d.date, d.join_success_rate) for d in hquality.quality] == [(yesterday, 0.5)]
    qos = sdk.list_rtc_client_qos_details(
        ListRtcClientQosDetailsRequest(
            app_id=app, room_id=room, mid="vloss", start_time=_t(now - 60), end_time=_t(now), direction="downlink"
        )
    )
    assert qos.room_id == room and [(d.uid, d.peerid, d.mid, d.data[0].value) for d in qos.data] == [
        ("bob", "alice", "vloss", 0.25)
    ]
    events = sdk.list_rtc_abnormal_events(ListRtcAbnormalEventsRequest(app=app, room_id=room))
    assert events.total == 1 and events.events[0].abnormal_factor_desc == "Downlink video packet loss"
    dist = sdk.list_rtc_abnormal_event_dimension(
        ListRtcAbnormalEventDimensionRequest(app=app, dimension="abnormal_type")
    )
    assert [(d.abnormal_type, d.user_count) for d in dist.dimensions] == [(2, 1)]


def _day_counters(**values: int) -> dict[str, int]:
    return {c.key: 0 for c in StatsDay.__table__.columns if c.key not in ("id", "app_id", "day")} | values


def test_sdk_sees_the_section_5_error(server: ServerThread, tenant) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientRequestException) as info:
        _v1(server, tenant).list_rtc_realtime_scale(ListRtcRealtimeScaleRequest(app="a" * 32))
    assert info.value.status_code == 400
    assert info.value.error_code == "DATA.100011001"
    assert info.value.error_msg == "Required String parameter 'metric' is not present"
