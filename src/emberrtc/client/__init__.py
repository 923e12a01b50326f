"""Ember's Python client (on aiortc): join a room, publish synthetic or real media, subscribe, leave.

See :class:`~emberrtc.client.room.RoomClient`; ``ember bot`` (:mod:`emberrtc.client.bot`) is built on it.
"""

from emberrtc.client.room import (
    JoinRefusedError,
    Publication,
    RemoteParticipant,
    RoomClient,
    RoomError,
    Subscription,
    sign_join,
    signalling_url,
)
from emberrtc.client.synthetic import ColourVideoTrack, ToneAudioTrack, median_rgb, parse_colour, tone_frequency

__all__ = [
    "ColourVideoTrack",
    "JoinRefusedError",
    "Publication",
    "RemoteParticipant",
    "RoomClient",
    "RoomError",
    "Subscription",
    "ToneAudioTrack",
    "median_rgb",
    "parse_colour",
    "sign_join",
    "signalling_url",
    "tone_frequency",
]
