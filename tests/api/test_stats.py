"""The statistics API is not built yet: it must say so honestly (501), after authenticating the caller."""

import httpx
import pytest
from huaweicloudsdkcloudrtc.v1 import CloudRTCClient as V1Client
from huaweicloudsdkcloudrtc.v1 import ListRtcRoomListRequest
from huaweicloudsdkcore.auth.credentials import BasicCredentials

from tests.conftest import token_for


def test_statistics_answer_501_through_the_sdk(server, tenant) -> None:
    client = (
        V1Client.new_builder()
        .with_credentials(BasicCredentials(tenant.ak, tenant.sk, tenant.project_id))
        .with_endpoints([server.url])
        .build()
    )
    # The SDK lets a 5xx surface as requests' HTTPError; what matters is that the request was
    # authenticated (not 401) and answered 501.
    with pytest.raises(Exception) as info:
        client.list_rtc_room_list(ListRtcRoomListRequest(app="a" * 32))
    status = getattr(info.value, "status_code", None) or info.value.response.status_code
    assert status == 501


@pytest.mark.parametrize(
    "path", ["/v1/{p}/rtc/realtime/quality", "/v1/{p}/rtc/realtimetime/scale", "/v1/rtc/data/abnormal-events"]
)
def test_statistics_paths_say_not_built(server, tenant, path) -> None:
    r = httpx.get(server.url + path.format(p=tenant.project_id), headers={"X-Auth-Token": token_for(server, tenant)})
    assert r.status_code == 501
    assert r.json()["error_code"] == "RTC.00002007"
    assert "not built" in r.json()["error_msg"]
    assert r.headers["X-request-Id"]


def test_statistics_need_credentials(server) -> None:
    r = httpx.get(f"{server.url}/v1/abc/rtc/realtime/quality")
    assert r.status_code == 401
    assert r.json()["error_code"] == "RTC.00001001"
