"""Recording rule bodies (spec 4.9, Tables 4-231 to 4-234)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from emberrtc.api.schemas.common import BUCKET_RE, SpecModel, check_object_path, combination_error, documented

# The variables a record_prefix may use: the four of Tables 4-233/4-234 and the ones the
# 2025 example uses (spec 004).
PREFIX_VARIABLES = frozenset(
    {"app_id", "record_format", "stream", "file_start_time", "publish_domain", "app", "record_type"}
)
_VAR_RE = re.compile(r"\{([^{}]*)\}")


def _check_prefix(value: str) -> str:
    unknown = {m for m in _VAR_RE.findall(value) if m not in PREFIX_VARIABLES}
    if unknown:
        raise ValueError(f"record_prefix uses unknown variables {sorted(unknown)}; allowed: {sorted(PREFIX_VARIABLES)}")
    if value.count("{") != value.count("}"):
        raise ValueError("record_prefix has unbalanced braces")
    # Check the shape of what the prefix expands to: it must stay inside the bucket.
    expanded = _VAR_RE.sub("x", value)
    check_object_path(expanded, "record_prefix")
    if expanded.endswith("/"):
        raise ValueError("record_prefix must end with a file name, not '/'")
    return value


RecordPrefix = Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(_check_prefix)]


class RecordFormat(StrEnum):
    HLS = "HLS"
    MP4 = "MP4"


class ObsAddr(SpecModel):
    """Table 4-232 RecordObsFileAddr."""

    location: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
    project_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    bucket: Annotated[str, documented(BUCKET_RE.pattern, 63, 3)]
    object: Annotated[str, StringConstraints(max_length=512)] | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not BUCKET_RE.fullmatch(v):
            raise ValueError("bucket must be 3-63 characters of lowercase letters, digits, '-' and '.'")
        return v

    @field_validator("object")
    @classmethod
    def _object(cls, v: str | None) -> str | None:
        return None if v is None else check_object_path(v, "obs_addr.object")


class HlsConfig(SpecModel):
    """Table 4-233 HLSRecordConfig."""

    record_cycle: int
    record_prefix: RecordPrefix | None = None
    record_slice_duration: int = Field(10, ge=2, le=60)
    record_max_duration_to_merge_file: int = Field(0, ge=-1, le=300)

    @field_validator("record_cycle")
    @classmethod
    def _cycle(cls, v: int) -> int:
        # Table 4-233: [60, 43200] or 0 (the whole stream in one playlist)
        if v != 0 and not 60 <= v <= 43200:
            raise ValueError("record_cycle must be 0 or between 60 and 43200")
        return v


class Mp4Config(SpecModel):
    """Table 4-234 MP4RecordConfig."""

    record_cycle: int = Field(ge=60, le=10800)
    record_prefix: RecordPrefix | None = None
    record_max_duration_to_merge_file: int = Field(0, ge=0, le=300)


class RecordRuleBody(SpecModel):
    """Table 4-231 (POST) and Table 4-276 (PUT)."""

    obs_addr: ObsAddr
    record_formats: list[RecordFormat] = Field(min_length=1, max_length=2)
    hls_config: HlsConfig | None = None
    mp4_config: Mp4Config | None = None

    @model_validator(mode="after")
    def _configs_match_formats(self) -> RecordRuleBody:
        formats = set(self.record_formats)
        if len(formats) != len(self.record_formats):
            raise combination_error("record_formats lists a format twice")
        if RecordFormat.HLS in formats and self.hls_config is None:
            raise combination_error("record_formats has HLS, so hls_config must be given")
        if RecordFormat.MP4 in formats and self.mp4_config is None:
            raise combination_error("record_formats has MP4, so mp4_config must be given")
        return self


class ListRulesQuery(SpecModel):
    """Table 4-247."""

    offset: int = Field(0, ge=0, le=2**31 - 1)  # an Integer of the spec (int32); SQL takes 64 bits
    limit: int = Field(100, ge=1, le=100)
