"""Real WebRTC through Janus: an aiortc publisher and subscriber in one videoroom.

The test does the signalling itself over the Janus API, as Ember will: the publisher offers a
solid-colour video track, the subscriber subscribes to it, and the frames it decodes must have the
publisher's colour. The publisher's stream is also forwarded as plain RTP to a loopback UDP socket,
where a keyframe must arrive after asking for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import struct
from collections.abc import AsyncIterator

import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcconfiguration import RTCBundlePolicy

from emberrtc.media.janus_client import JanusClient, RtpForwardStream

pytestmark = pytest.mark.media

WIDTH, HEIGHT = 320, 240
# Lossy coding and RGB -> YUV 4:2:0 -> RGB move a flat colour by up to ~10 steps (measured); the two
# test colours are over 100 steps apart per channel.
COLOUR_TOLERANCE = 20
FORWARD_PT, FORWARD_SSRC = 100, 0x0E3B_E500


class SolidColourTrack(VideoStreamTrack):
    """Video of one flat RGB colour, at aiortc's default 30 fps pacing."""

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        self._image = bytes(rgb) * (WIDTH * HEIGHT)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
        # rgb24 rows of 320 pixels are 960 bytes, already aligned: the plane has no padding.
        frame.planes[0].update(self._image)
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


def _peer_connection() -> RTCPeerConnection:
    # No ICE servers: aiortc would otherwise ask a public STUN server. MAX_BUNDLE: see DESIGN.md.
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def _codecs(name: str) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    return [codec for codec in capabilities if codec.mimeType.lower() == f"video/{name}"]


def _jsep(description: RTCSessionDescription) -> dict[str, object]:
    # aiortc puts every candidate in the SDP and does not trickle.
    return {"type": description.type, "sdp": description.sdp, "trickle": False}


def _candidate_addresses(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


def _mean_rgb(frame: av.VideoFrame) -> tuple[float, float, float]:
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    data = bytes(plane)
    row_bytes = rgb.width * 3
    rows = b"".join(data[y * plane.line_size : y * plane.line_size + row_bytes] for y in range(rgb.height))
    pixels = rgb.width * rgb.height
    return (sum(rows[0::3]) / pixels, sum(rows[1::3]) / pixels, sum(rows[2::3]) / pixels)


# -- RTP forwarding target -------------------------------------------------------------------------


class _RtpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.packets.put_nowait(data)


@contextlib.asynccontextmanager
async def _rtp_sink() -> AsyncIterator[tuple[int, _RtpSink]]:
    transport, sink = await asyncio.get_running_loop().create_datagram_endpoint(_RtpSink, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1], sink
    finally:
        transport.close()


def _rtp_payload(packet: bytes) -> tuple[int, int, bytes]:
    """(payload type, SSRC, payload) of an RTP packet (RFC 3550 section 5.1)."""
    first, second = packet[0], packet[1]
    assert first >> 6 == 2, "not RTP version 2"
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        (length,) = struct.unpack_from("!H", packet, offset + 2)
        offset += 4 + 4 * length
    end = len(packet) - (packet[-1] if first & 0x20 else 0)  # padding
    (ssrc,) = struct.unpack_from("!I", packet, 8)
    return second & 0x7F, ssrc, packet[offset:end]


def _starts_keyframe(codec: str, payload: bytes) -> bool:
    """Whether an RTP payload begins (or carries) a keyframe."""
    if codec == "vp8":
        # RFC 7741 section 4.2: skip the payload descriptor, then bit 0 of the VP8 header is P.
        start, partition = payload[0] & 0x10, payload[0] & 0x07
        offset = 1
        if payload[0] & 0x80:
            ext = payload[1]
            offset = 2
            if ext & 0x80:
                offset += 2 if payload[offset] & 0x80 else 1
            if ext & 0x40:
                offset += 1
            if ext & 0x30:
                offset += 1
        return bool(start) and partition == 0 and payload[offset] & 0x01 == 0
    # H.264, RFC 6184 section 5.2: single NAL, STAP-A (24) or FU-A (28); IDR is 5, SPS 7.
    nal_type = payload[0] & 0x1F
    if nal_type == 24:
        types, offset = [], 1
        while offset + 2 < len(payload):
            (size,) = struct.unpack_from("!H", payload, offset)
            types.append(payload[offset + 2] & 0x1F)
            offset += 2 + size
        return any(t in (5, 7) for t in types)
    if nal_type == 28:
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return nal_type in (5, 7)


# -- the test --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "colour"),
    [("vp8", (200, 40, 120)), ("h264", (30, 160, 220))],
)
async def test_subscriber_sees_publisher_colour(
    client: JanusClient, media_ip: str, codec: str, colour: tuple[int, int, int]
) -> None:
    session = await client.create_session()
    rooms = await session.attach_videoroom()
    room = await rooms.create_room(f"room-{codec}", allowed=["pub-token", "sub-token"], publishers=2)
    pc_pub, pc_sub = _peer_connection(), _peer_connection()
    try:
        # Publisher: join, offer a sendonly video track restricted to the codec under test.
        publisher = await session.attach_videoroom()
        joined = await publisher.join_publisher(room, participant="alice", display="Alice", token="pub-token")
        assert joined["id"] == "alice"
        transceiver = pc_pub.addTransceiver(SolidColourTrack(colour), direction="sendonly")
        transceiver.setCodecPreferences(_codecs(codec))
        await pc_pub.setLocalDescription(await pc_pub.createOffer())
        published = await publisher.publish(_jsep(pc_pub.localDescription))
        assert published.jsep is not None
        # Half-trickle: Janus's candidates are in its SDP, and only on the enforced address.
        assert _candidate_addresses(published.jsep["sdp"]) == {media_ip}
        [stream] = published.data["streams"]
        assert (stream["type"], stream["codec"]) == ("video", codec)
        await pc_pub.setRemoteDescription(RTCSessionDescription(sdp=published.jsep["sdp"], type=published.jsep["type"]))
        async with asyncio.timeout(10):
            await publisher.wait_event(lambda event: event.get("janus") == "webrtcup")

        # Subscriber: Janus offers, aiortc answers, "start" makes media flow.
        subscriber = await session.attach_videoroom()
        subscription = await subscriber.join_subscriber(room, [{"feed": "alice"}], token="sub-token")
        assert subscription.jsep is not None
        assert _candidate_addresses(subscription.jsep["sdp"]) == {media_ip}
        tracks: asyncio.Queue[object] = asyncio.Queue()
        pc_sub.on("track", tracks.put_nowait)
        await pc_sub.setRemoteDescription(
            RTCSessionDescription(sdp=subscription.jsep["sdp"], type=subscription.jsep["type"])
        )
        await pc_sub.setLocalDescription(await pc_sub.createAnswer())
        await subscriber.start(_jsep(pc_sub.localDescription))

        async with asyncio.timeout(20):
            remote = await tracks.get()
            frames = [await remote.recv() for _ in range(5)]  # type: ignore[attr-defined]
        for frame in frames:
            assert (frame.width, frame.height) == (WIDTH, HEIGHT)
            mean = _mean_rgb(frame)
            assert all(abs(got - want) <= COLOUR_TOLERANCE for got, want in zip(mean, colour, strict=True)), (
                f"decoded colour {mean} is not the published {colour}"
            )
        participants = await rooms.list_participants(room)
        assert [(p["id"], p["publisher"]) for p in participants] == [("alice", True)]

        # RTP forwarding to loopback, and a keyframe on request.
        async with _rtp_sink() as (port, sink):
            forwarders = await rooms.rtp_forward(
                room,
                "alice",
                "127.0.0.1",
                [RtpForwardStream(mid=stream["mid"], port=port, pt=FORWARD_PT, ssrc=FORWARD_SSRC)],
            )
            [forwarder] = forwarders
            assert (forwarder["type"], forwarder["port"]) == ("video", port)
            async with asyncio.timeout(5):
                first = await sink.packets.get()
            assert _rtp_payload(first)[:2] == (FORWARD_PT, FORWARD_SSRC)
            # VP8 from aiortc has a keyframe only every 3000 frames, so one arriving now answers the
            # request; nothing already queued may count.
            while not sink.packets.empty():
                sink.packets.get_nowait()

            await publisher.request_keyframe()
            async with asyncio.timeout(5):
                while not _starts_keyframe(codec, _rtp_payload(await sink.packets.get())[2]):
                    pass

            [listed] = await rooms.list_forwarders(room)
            assert [f["stream_id"] for f in listed["forwarders"]] == [forwarder["stream_id"]]
            await rooms.stop_rtp_forward(room, "alice", forwarder["stream_id"])
            assert await rooms.list_forwarders(room) == []
    finally:
        await pc_pub.close()
        await pc_sub.close()
        await session.destroy()
