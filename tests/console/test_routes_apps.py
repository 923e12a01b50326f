"""The Applications pages: list, create (with the API's validation errors in place), enable and disable,
delete, the app key on demand; and one tenant never reaching another's apps."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import make_tenant, token_for
from tests.console.conftest import Console
from tests.support.server import ServerThread, TenantInfo


@pytest.fixture
def api(server: ServerThread, tenant: TenantInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, tenant)}) as c:
        yield c


def _invalid_field(page: str) -> list[str]:
    return re.findall(r'name="([^"]+)"[^>]*aria-invalid="true"', page)


def test_creating_an_app_shows_it_and_the_api_has_it(console: Console, api: httpx.Client) -> None:
    r = console.post("/console/apps", {"app_name": "shop-front"})
    assert r.status_code == 303
    app_id = r.headers["location"].rsplit("/", 1)[1]
    assert api.get(f"/v2/apps/{app_id}").json()["app_name"] == "shop-front"
    page = console.get(r.headers["location"])
    assert page.status_code == 200 and "shop-front" in page.text and app_id in page.text
    listing = console.get("/console/apps").text
    assert f'href="/console/apps/{app_id}"' in listing and "ACTIVATION" in listing


@pytest.mark.parametrize("name", ["", "   ", "x" * 129])
def test_a_bad_name_gets_the_api_error_next_to_the_field(console: Console, api: httpx.Client, name: str) -> None:
    expected = api.post("/v2/apps", json={"app_name": name}).json()  # what the API says about it
    r = console.post("/console/apps", {"app_name": name})
    assert r.status_code == 400
    assert expected["error_code"] in r.text and expected["error_msg"] in html.unescape(r.text)
    assert _invalid_field(r.text) == ["app_name"]
    assert api.get("/v2/apps").json()["count"] == 0


def test_a_duplicate_name_is_refused_with_the_api_code(console: Console) -> None:
    assert console.post("/console/apps", {"app_name": "twin"}).status_code == 303
    r = console.post("/console/apps", {"app_name": "twin"})
    assert r.status_code == 400 and "RTC.00001020" in r.text and "exists already" in r.text


def test_the_app_key_is_shown_on_demand_only(console: Console, api: httpx.Client) -> None:
    app_id = console.post("/console/apps", {"app_name": "keyed"}).headers["location"].rsplit("/", 1)[1]
    key = api.get(f"/v2/apps/{app_id}").json()["authentication"]["app_key"]
    page = console.get(f"/console/apps/{app_id}")
    assert key not in page.text and "Show app key" in page.text
    shown = console.post(f"/console/apps/{app_id}/app-key", {})
    assert shown.status_code == 200 and key in shown.text
    assert shown.headers["cache-control"] == "no-store"


def test_authentication_settings_are_the_apis_and_read_only(console: Console, api: httpx.Client) -> None:
    app_id = console.post("/console/apps", {"app_name": "authn"}).headers["location"].rsplit("/", 1)[1]
    auth = api.get(f"/v2/apps/{app_id}").json()["authentication"]
    page = console.get(f"/console/apps/{app_id}").text
    facts = page.split("<h2>Authentication</h2>", 1)[1].split("</section>", 1)[0]
    assert f"<dd>{'yes' if auth['enable'] else 'no'}</dd>" in facts and f"<dd>{auth['expire']} s</dd>" in facts
    assert auth["update_time"] in facts and "Read only" in facts
    # No form changes them (the v2 API has no operation for it): only the "Show app key" button posts.
    assert re.findall(r'<form [^>]*action="([^"]+)"', facts) == [f"/console/apps/{app_id}/app-key"]


def test_disable_enable_and_delete(console: Console, api: httpx.Client) -> None:
    app_id = console.post("/console/apps", {"app_name": "switch"}).headers["location"].rsplit("/", 1)[1]
    assert console.post(f"/console/apps/{app_id}/state", {"state": "DEACTIVATION"}).status_code == 303
    assert api.get(f"/v2/apps/{app_id}").json()["state"]["state"] == "DEACTIVATION"
    assert "DEACTIVATION" in console.get(f"/console/apps/{app_id}").text
    assert console.post(f"/console/apps/{app_id}/state", {"state": "ACTIVATION"}).status_code == 303
    assert api.get(f"/v2/apps/{app_id}").json()["state"]["state"] == "ACTIVATION"
    bad = console.post(f"/console/apps/{app_id}/state", {"state": "ARREARS"})
    assert bad.status_code == 400 and "RTC.00001003" in bad.text
    # Deleting asks for the app ID, typed.
    refused = console.post(f"/console/apps/{app_id}/delete", {"confirm": "yes"})
    assert refused.status_code == 400 and _invalid_field(refused.text) == ["confirm"]
    assert api.get(f"/v2/apps/{app_id}").status_code == 200
    gone = console.post(f"/console/apps/{app_id}/delete", {"confirm": app_id})
    assert gone.status_code == 303 and gone.headers["location"] == "/console/apps"
    assert api.get(f"/v2/apps/{app_id}").status_code == 404


def test_another_tenants_app_is_out_of_reach(console: Console, server: ServerThread, api: httpx.Client) -> None:
    theirs = make_tenant(server)
    with httpx.Client(base_url=server.url, headers={"X-Auth-Token": token_for(server, theirs)}) as other:
        their_app = other.post("/v2/apps", json={"app_name": "private"}).json()["app_id"]
        their_key = other.get(f"/v2/apps/{their_app}").json()["authentication"]["app_key"]
        assert "private" not in console.get("/console/apps").text
        for page in ("", "/recording", "/jobs", "/recordings", "/rooms", "/rooms/events", "/usage", "/try"):
            r = console.get(f"/console/apps/{their_app}{page}")
            assert r.status_code == 404 and "RTC.00001015" in r.text, page
        for action, form in (
            ("app-key", {}),
            ("state", {"state": "DEACTIVATION"}),
            ("delete", {"confirm": their_app}),
            ("callback", {"url": "http://127.0.0.1:9/x"}),
            ("auto-record", {"mode": "AUTO_RECORD_OFF"}),
            ("try", {"room_id": "r", "user_id": "u"}),
        ):
            r = console.post(f"/console/apps/{their_app}/{action}", form)
            assert r.status_code == 404 and "RTC.00001015" in r.text, action
            assert their_key not in r.text
        app = other.get(f"/v2/apps/{their_app}").json()
        assert app["state"]["state"] == "ACTIVATION" and "record_callback" not in app["callbacks"]
