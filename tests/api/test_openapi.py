"""/openapi.json and /docs describe the real request and response schemas; real responses match them."""

import httpx

from emberrtc.api.schemas import responses as R
from tests.support.spec_checks import mp4_rule, own_project


def test_openapi_documents_requests_and_responses(server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    paths = spec["paths"]
    create = paths["/v2/apps/{app_id}/record-rules"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RecordRuleBody")
    assert [(p["name"], p["in"], p["required"]) for p in create["parameters"]] == [("app_id", "path", True)]
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/RecordRule")
    assert create["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    schemas = spec["components"]["schemas"]
    # The spec's ranges are in the published schema, e.g. Table 4-234 record_cycle in [60, 10800].
    assert schemas["Mp4Config"]["properties"]["record_cycle"]["minimum"] == 60
    assert schemas["Mp4Config"]["properties"]["record_cycle"]["maximum"] == 10800
    assert "/v2/apps/{app_id}/mix-stream-jobs" in paths and "/v3/auth/tokens" in paths
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_real_responses_match_documented_models(http) -> None:
    app_id = http.post("/v2/apps", json={"app_name": "doc"}).json()["app_id"]
    R.App.model_validate(http.get(f"/v2/apps/{app_id}").json())
    R.ListAppsResponse.model_validate(http.get("/v2/apps").json())
    R.AppStateResponse.model_validate(http.post(f"/v2/apps/{app_id}/disable").json())
    http.post(f"/v2/apps/{app_id}/enable")
    body = mp4_rule(project_id=own_project(http))
    rule = R.RecordRule.model_validate(http.post(f"/v2/apps/{app_id}/record-rules", json=body).json())
    R.ListRulesResponse.model_validate(http.get(f"/v2/apps/{app_id}/record-rules").json())
    R.RecordCallbackResponse.model_validate(
        http.put(f"/v2/apps/{app_id}/record-callback", json={"url": "http://127.0.0.1:9/cb"}).json()
    )
    R.AutoRecordResponse.model_validate(http.get(f"/v2/apps/{app_id}/auto-record-mode").json())
    job = {"room_id": "r1", "user_id": "u1", "record_param": {"record_rule_id": rule.rule_id}}
    R.IndividualJob.model_validate(http.post(f"/v2/apps/{app_id}/individual-stream-jobs", json=job).json())
    mix = {
        "mix_param": {"room_id": "r1", "encode_template": "640x480_15_500", "layout_template": "nine_grids_view"},
        "record_param": {"record_rule_id": rule.rule_id},
    }
    R.MixJob.model_validate(http.post(f"/v2/apps/{app_id}/mix-stream-jobs", json=mix).json())
    R.ErrorBody.model_validate(http.get("/v2/apps/nope").json())
