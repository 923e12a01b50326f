"""Single-stream (spec 4.4) and mixed-stream (spec 4.8) job bodies."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from emberrtc.api.schemas.common import (
    RoomId,
    RtmpUrl,
    RuleId,
    S3Uri,
    SpecModel,
    UserId,
    check_id,
    combination_error,
    missing_error,
)
from emberrtc.domain.errors import InvalidParameterCombination
from emberrtc.domain.mix_layout import AUDIO_ONLY, check_layout
from emberrtc.domain.mix_layout import parse_encode_template as parse_encode_template  # the API's name for it

# spec 4.4.1 Table 4-26: max_idle_time in [5, 43200], default 30
MaxIdleTime = Annotated[int, Field(ge=5, le=43200)]


class VideoType(StrEnum):
    CAMERASTREAM = "CAMERASTREAM"
    SCREENSTREAM = "SCREENSTREAM"


class SelectStreamType(StrEnum):
    LD = "LD"
    SD = "SD"
    HD = "HD"
    FHD = "FHD"


class LayoutTemplate(StrEnum):
    nine_grids_view = "nine_grids_view"
    screen_share_left = "screen_share_left"
    screen_share_right = "screen_share_right"
    custom = "custom"


class CropMode(StrEnum):
    KEEP_RATIO_PADDING = "KEEP_RATIO_PADDING"
    KEEP_RATIO_CROP = "KEEP_RATIO_CROP"


class FillingPolicy(StrEnum):
    FIXED_USER = "FIXED_USER"
    SHARED_SCREEN = "SHARED_SCREEN"


# spec 4.8.1 Table 4-175: the twelve encode templates, written with '*' (tables) or 'x' (examples)
ENCODE_TEMPLATES = frozenset(
    {
        "1920*1080_30_4620",
        "1920*1080_30_3150",
        "1920*1080_15_3460",
        "1920*1080_15_2080",
        "1280*720_30_3420",
        "1280*720_30_1710",
        "1280*720_15_2260",
        "1280*720_15_1130",
        "640*480_30_1000",
        "640*480_15_500",
        "480*360_30_490",
        "480*360_15_320",
    }
)


class PublishParam(SpecModel):
    """Table 4-27 / 4-178."""

    rtmp_urls: list[RtmpUrl] = Field(min_length=1, max_length=10)


class RecordParam(SpecModel):
    """Table 4-28 / 4-179."""

    record_rule_id: RuleId


class IndividualJobBody(SpecModel):
    """Table 4-26."""

    room_id: RoomId
    user_id: UserId
    is_record_audio: bool = True
    video_type: VideoType = VideoType.CAMERASTREAM
    select_stream_type: SelectStreamType = SelectStreamType.FHD
    max_idle_time: MaxIdleTime = 30
    publish_param: PublishParam | None = None
    record_param: RecordParam | None = None

    @model_validator(mode="after")
    def _has_output(self) -> IndividualJobBody:
        if self.publish_param is None and self.record_param is None:
            raise missing_error("record_param or publish_param is required: the job must have an output")
        return self


class UpdateIndividualJobBody(SpecModel):
    """Table 4-56."""

    publish_param: PublishParam | None = None
    record_param: RecordParam | None = None


class MixLayoutPane(SpecModel):
    """Table 4-176."""

    id: int | None = Field(None, ge=1, le=25)
    user_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    video_type: VideoType = VideoType.CAMERASTREAM
    x: float | None = Field(None, ge=0.0, le=1.0)
    y: float | None = Field(None, ge=0.0, le=1.0)
    width: float | None = Field(None, ge=0.0, le=1.0)
    height: float | None = Field(None, ge=0.0, le=1.0)
    # "A maximum of 25 floors are supported, with 0 at the bottom."
    zorder: int | None = Field(None, ge=0, le=25)
    crop_mode: CropMode | None = None
    filling_policy: FillingPolicy | None = None

    @field_validator("user_id")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        # The spec's own example sends "" for a pane filled by whoever shares a screen.
        if v:
            check_id(v)
        return v


class MixUserBackgroundImage(SpecModel):
    """Table 4-177."""

    user_id: UserId
    image_uri: S3Uri


Panes = Annotated[list[MixLayoutPane], Field(max_length=25)]
Images = Annotated[list[MixUserBackgroundImage], Field(max_length=100)]


def _check_layout(template: LayoutTemplate | None, panes: list[MixLayoutPane] | None, audio_only: bool) -> None:
    try:
        check_layout(
            template.value if template else None,
            [p.model_dump() for p in panes] if panes else None,
            audio_only,
        )
    except InvalidParameterCombination as exc:
        raise combination_error(exc.detail or exc.title) from exc


class MixParam(SpecModel):
    """Table 4-175."""

    room_id: RoomId
    encode_template: str
    max_idle_time: MaxIdleTime = 30
    layout_template: LayoutTemplate | None = None
    default_user_background_image: S3Uri | None = None
    screen_background_image: S3Uri | None = None
    background_image: S3Uri | None = None
    layout_panes: Panes | None = None
    user_background_images: Images | None = None

    @field_validator("encode_template")
    @classmethod
    def _template(cls, v: str) -> str:
        if v != AUDIO_ONLY and v.replace("x", "*") not in ENCODE_TEMPLATES:
            raise ValueError(
                "encode_template must be one of the twelve templates (e.g. 1280x720_15_2260) or audio_only"
            )
        return v

    @model_validator(mode="after")
    def _layout(self) -> MixParam:
        _check_layout(self.layout_template, self.layout_panes, self.encode_template == AUDIO_ONLY)
        return self


class MixJobBody(SpecModel):
    """Table 4-174."""

    mix_param: MixParam
    publish_param: PublishParam | None = None
    record_param: RecordParam | None = None

    @model_validator(mode="after")
    def _has_output(self) -> MixJobBody:
        if self.publish_param is None and self.record_param is None:
            raise missing_error("record_param or publish_param is required: the job must have an output")
        return self


class UpdateMixParam(SpecModel):
    """Table 4-207. Combinations with the job's own template are checked by ``domain.mix_layout``."""

    layout_template: LayoutTemplate | None = None
    background_image: S3Uri | None = None
    default_user_background_image: S3Uri | None = None
    screen_background_image: S3Uri | None = None
    max_idle_time: MaxIdleTime | None = None
    layout_panes: Panes | None = None
    user_background_images: Images | None = None


class UpdateMixJobBody(SpecModel):
    """Table 4-206."""

    mix_param: UpdateMixParam
