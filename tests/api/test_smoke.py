from huaweicloudsdkcloudrtc.v2 import AppReq, CreateAppRequest, ShowAppRequest


def test_create_and_show_app_with_sdk(sdk) -> None:
    created = sdk.create_app(CreateAppRequest(body=AppReq(app_name="demo")))
    assert len(created.app_id) == 32
    shown = sdk.show_app(ShowAppRequest(app_id=created.app_id))
    assert shown.app_name == "demo"
    assert shown.state.state == "ACTIVATION"
    assert shown.authentication.expire == 300


def test_create_and_show_app_with_token(http) -> None:
    r = http.post("/v2/apps", json={"app_name": "demo"})
    assert r.status_code == 201, r.text
    assert r.headers["X-request-Id"]
    app_id = r.json()["app_id"]
    r = http.get(f"/v2/apps/{app_id}")
    assert r.status_code == 200
    assert r.json()["app_name"] == "demo"
