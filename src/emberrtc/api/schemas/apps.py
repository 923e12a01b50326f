"""Application management bodies (spec 4.3, 4.5, 4.6, 4.7)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from emberrtc.api.schemas.common import HttpUrl, SpecModel, UserId, missing_error


class AppStateName(StrEnum):
    # spec 4.5.2 Table 4-76: filter values for GET /v2/apps?state=
    ACTIVATION = "ACTIVATION"
    DEACTIVATION = "DEACTIVATION"
    ARREARS = "ARREARS"


class AutoRecordModeName(StrEnum):
    # spec 4.6.1 Table 4-134
    AUTO_RECORD_OFF = "AUTO_RECORD_OFF"
    AUTO_INDIVIDUAL_RECORD = "AUTO_INDIVIDUAL_RECORD"


class CallbackEvent(StrEnum):
    # spec 4.3 and 6.6: the recording events Ember sends (first spellings, spec/README.md)
    RECORD_NEW_FILE_START = "RECORD_NEW_FILE_START"
    RECORD_FILE_COMPLETE = "RECORD_FILE_COMPLETE"
    CLOUD_RECORD_OVER = "CLOUD_RECORD_OVER"


class CreateAppBody(SpecModel):
    """spec 4.5.1 Table 4-69."""

    app_name: Annotated[str, StringConstraints(min_length=1, max_length=128)]

    @field_validator("app_name")
    @classmethod
    def _printable(cls, v: str) -> str:
        if not v.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
            raise ValueError("app_name must be printable text, not blank")
        return v


class ListAppsQuery(SpecModel):
    """spec 4.5.2 Table 4-76."""

    state: AppStateName | None = None
    offset: int = Field(0, ge=0, le=2**31 - 1)  # an Integer of the spec (int32); SQL takes 64 bits
    limit: int = Field(100, ge=1, le=100)


class RecordCallbackBody(SpecModel):
    """spec 4.3.1 Table 4-3. ``notify_event_subscription`` (Table 4-6) may be given to subscribe to
    fewer events; by default all recording events are sent."""

    url: HttpUrl
    auth_key: Annotated[str, StringConstraints(max_length=256)] | None = None
    notify_event_subscription: list[CallbackEvent] | None = None


class AutoRecordBody(SpecModel):
    """spec 4.6.1 Table 4-134."""

    mode: AutoRecordModeName
    record_rule_id: Annotated[str, StringConstraints(max_length=64)] | None = None

    @model_validator(mode="after")
    def _rule_for_individual(self) -> AutoRecordBody:
        if self.mode is AutoRecordModeName.AUTO_INDIVIDUAL_RECORD and not self.record_rule_id:
            raise missing_error("record_rule_id is required when mode is AUTO_INDIVIDUAL_RECORD")
        return self


class RemoveUsersBody(SpecModel):
    """spec 4.7.1 Table 4-157."""

    user_ids: list[UserId] = Field(min_length=1, max_length=100)
