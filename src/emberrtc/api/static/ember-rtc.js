// Ember browser SDK: join an Ember room, publish camera and screen, receive the others.
//
// An ES module speaking Ember's signalling protocol (the docstring of
// src/emberrtc/api/routes/signalling.py) over one WebSocket at /v1/rtc/signalling. Each published
// stream is its own RTCPeerConnection; everything received comes on ONE subscriber RTCPeerConnection
// that the server renegotiates as subscriptions come and go (Janus multistream). No ICE servers
// (nothing contacts a public STUN server) and max-bundle (all media shares one transport). SDP is
// exchanged whole: ICE gathering completes before an offer or answer is sent (no trickle).
// subscribe() calls made in the same turn of the event loop go to the server as one request.
//
//   import { EmberRoom } from "/sdk/ember-rtc.js";
//   const room = await EmberRoom.join(location.origin, { appId, roomId, userId, ctime, signature });
//   room.addEventListener("subscription", (e) => showVideo(e.detail.userId, e.detail.mediaStream));
//   room.addEventListener("subscription_ended", (e) => hideVideo(e.detail.subscription));
//   await room.publishCamera();          // getUserMedia({audio, video}), published as "camera"
//   await room.publishScreen();          // getDisplayMedia, published as "screen"
//   await room.leave();
//
// By default the room subscribes to every stream of every other participant (autoSubscribe).
// In a cluster, a node that does not host the room answers the join with "redirect": join() follows it to
// the node that does (room.server, room.redirects), so the page may come from any node.
// A signalling connection lost unexpectedly (the node died, the network broke; not after leave, removal or
// dismissal) is rejoined on its own for up to rejoinMs (30 s; 0: never), with backoff, through the URL
// given to join() (a load balancer) and the live nodes the join answer named (room.nodes); the streams
// are published again and the others' streams received again. Events "reconnecting" and "reconnected"
// say so; "ended" (connection_lost) comes only when rejoining fails.
// Signing with the app key in the browser (signJoin / the appKey option) is for development only: it
// puts the key in the page. Production apps sign joins on their own server and hand the browser only
// ctime and signature.

export const SDK_VERSION = "emberrtc-js/0.1.0";
export const SIGNALLING_PATH = "/v1/rtc/signalling";
// Events after which the server closes the WebSocket.
export const FINAL_EVENTS = ["left", "removed", "dismissed", "disconnected"];
// Default signature validity: the spec README recommends now + 2 h.
const DEFAULT_VALIDITY = 2 * 3600;
const REQUEST_TIMEOUT_MS = 15000;
// Most "redirect" answers followed in one join (a cluster redirects once, more only while a placement moves).
const MAX_REDIRECTS = 3;
const GATHER_TIMEOUT_MS = 5000;
// Rejoining after a lost connection: for how long by default, and the first and longest wait in between.
const REJOIN_MS = 30000;
const REJOIN_BACKOFF_MS = [250, 2000];

// QoS reports over signalling (message "stats", format in src/emberrtc/stats/report.py).
const STATS_INTERVAL_MS = 5000;

/**
 * Measures a room from getStats() and sends a "stats" report every few seconds: per published stream
 * (outbound-rtp with the SFU's remote-inbound-rtp: packets, loss, RTT, bit rate, frame rate and size) and
 * per subscription (inbound-rtp: packets, loss, jitter, bit rate, frame rate and size, freezes), the
 * network type when the browser tells it, the time to join, and the first audio and video (the first
 * media on a received track: its "unmute"). Video freezes are the browser's own totalFreezesDuration
 * (webrtc-stats: a frame later than max(3 x the average frame time, average + 150 ms)); audio freezes
 * are totalInterruptionDuration (concealment over 150 ms). Browsers do not expose CPU use.
 */
class QosReporter {
  constructor(room, intervalMs) {
    this.room = room;
    this.intervalMs = intervalMs;
    this.joinedAt = performance.now();
    this._last = new Map();
    this._once = {};
    this._seen = new Map();
    this._timer = intervalMs ? setInterval(() => this._tick(), intervalMs) : null;
    /** Reports sent and stored (the server's stats_ok answers). */
    this.sent = 0;
    this.stored = 0;
  }

  stop() {
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
  }

  joined(joinMs) {
    this._once.join_ms = joinMs;
  }

  firstMedia(kind) {
    const key = `first_${kind}_ms`;
    if (this._seen.has(key)) return;
    this._seen.set(key, true);
    this._once[key] = performance.now() - this.joinedAt;
  }

  async _tick() {
    try {
      const reply = await this.room._request(await this.build());
      this.sent += 1;
      if (reply.stored) this.stored += 1;
    } catch (err) {
      // best effort: the room may be closing
    }
  }

  _delta(key, values) {
    const before = this._last.get(key) || {};
    this._last.set(key, values);
    const out = {};
    for (const [k, v] of Object.entries(values)) out[k] = Math.max(0, (v || 0) - (before[k] || 0));
    return out;
  }

  _attempts(pcs) {
    let attempts = 0;
    let ok = 0;
    for (const pc of pcs) {
      if (!this._seen.has(pc)) {
        this._seen.set(pc, false);
        attempts += 1;
      }
      if (!this._seen.get(pc) && pc.connectionState === "connected") {
        this._seen.set(pc, true);
        ok += 1;
      }
    }
    return { attempts, ok };
  }

  // Per kind, this interval's figures of `pc`; downlink: of the streams whose mid is in `mids` only (one
  // subscription's, on the subscriber RTCPeerConnection every subscription shares).
  async _leg(pc, up, mids = null) {
    const seconds = this.intervalMs / 1000;
    const stats = await pc.getStats();
    const remote = new Map();
    stats.forEach((r) => {
      if (r.type === "remote-inbound-rtp") remote.set(r.localId, r);
    });
    const out = {};
    stats.forEach((r) => {
      if (up && r.type === "outbound-rtp") {
        const ri = remote.get(r.id) || {};
        const d = this._delta(r.id, { packets: r.packetsSent, bytes: r.bytesSent, lost: ri.packetsLost });
        const lost = Math.min(d.lost, d.packets);
        out[r.kind] = {
          packets: d.packets - lost,
          lost,
          bitrate: (d.bytes * 8) / 1000 / seconds,
          rtt: ri.roundTripTime !== undefined ? ri.roundTripTime * 1000 : undefined,
          jitter: ri.jitter !== undefined ? ri.jitter * 1000 : undefined,
          fps: r.framesPerSecond,
          width: r.frameWidth,
          height: r.frameHeight,
        };
      } else if (!up && r.type === "inbound-rtp" && (!mids || mids.has(String(r.mid)))) {
        const d = this._delta(r.id, {
          packets: r.packetsReceived,
          bytes: r.bytesReceived,
          lost: r.packetsLost,
          freeze: r.kind === "video" ? r.totalFreezesDuration : r.totalInterruptionDuration,
          frames: r.framesDecoded,
        });
        out[r.kind] = {
          packets: d.packets,
          lost: d.lost,
          bitrate: (d.bytes * 8) / 1000 / seconds,
          jitter: r.jitter !== undefined ? r.jitter * 1000 : undefined,
          freeze_ms: d.freeze * 1000,
          fps: r.kind === "video" ? d.frames / seconds : undefined,
          width: r.frameWidth,
          height: r.frameHeight,
        };
      }
    });
    for (const leg of Object.values(out)) {
      for (const k of Object.keys(leg)) if (leg[k] === undefined || leg[k] === null || Number.isNaN(leg[k])) delete leg[k];
    }
    return out;
  }

  /** The report of the interval just ended. */
  async build() {
    const room = this.room;
    const report = { type: "stats", interval: this.intervalMs / 1000, ctime: Date.now() / 1000, ...this._once };
    this._once = {};
    const net = navigator.connection && navigator.connection.type;
    if (typeof net === "string" && /^[a-z0-9_-]{1,16}$/.test(net)) report.access_net = net;
    const uplink = {};
    for (const [stream, publication] of room.publications) {
      const legs = await this._leg(publication.pc, true);
      if (legs.audio && stream === "camera") uplink.audio = legs.audio;
      if (legs.video) uplink[stream === "camera" ? "video" : "screen"] = legs.video;
    }
    if (Object.keys(uplink).length) report.uplink = uplink;
    report.push = this._attempts([...room.publications.values()].map((p) => p.pc));
    report.pull = this._attempts([...room.subscriptions.values()].map((s) => s.pc));
    const peers = new Map();
    for (const sub of room.subscriptions.values()) {
      const legs = await this._leg(sub.pc, false, new Set(sub.tracks.map((t) => String(t.mid))));
      const peer = peers.get(sub.userId) || { peer_id: sub.userId };
      peers.set(sub.userId, peer);
      if (legs.audio) peer.audio = legs.audio;
      if (legs.video) peer[sub.stream === "camera" ? "video" : "screen"] = legs.video;
    }
    report.downlink = [...peers.values()].slice(0, 64);
    return report;
  }
}

/** The server refused a request; `code` is from the SparkRTC catalogue (e.g. RTC.00001001). */
export class RoomError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "RoomError";
    this.code = code;
    this.serverMessage = message;
  }
}

/** hex(HMAC-SHA256(key=appKey, msg=appId + roomId + userId + ctime)) with WebCrypto (spec README).
 *  For development only: production apps sign on their server, never exposing the app key. */
export async function signJoin(appKey, appId, roomId, userId, ctime) {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(appKey), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const mac = await crypto.subtle.sign("HMAC", key, enc.encode(`${appId}${roomId}${userId}${ctime}`));
  return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The signalling URL for a server given as http(s)://host:port (or a ws(s):// URL). */
export function signallingUrl(server) {
  const url = new URL(server);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new Error(`server must be http(s) or ws(s): ${server}`);
  if (!url.pathname.replace(/\/$/, "").endsWith(SIGNALLING_PATH)) url.pathname = SIGNALLING_PATH;
  url.search = "";
  url.hash = "";
  return url.toString();
}

// iceServers: the TURN relay and credential the join answer hands this session ([] without a relay: the
// browser then asks no STUN server either). The browser tries every URL (UDP, TCP, TLS) and keeps the
// direct path when it works.
function peerConnection(iceServers = []) {
  return new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
}

// Resolves once ICE gathering is complete (the SDP then holds every candidate), or after a deadline
// with whatever candidates were gathered by then.
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

function openSocket(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new RoomError("RTC.00002000", `cannot connect to ${url}`));
  });
}

function nextMessage(ws, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new RoomError("RTC.00002000", "no answer to join")), timeoutMs);
    ws.onmessage = (e) => {
      clearTimeout(timer);
      resolve(JSON.parse(e.data));
    };
    ws.onclose = (e) => {
      clearTimeout(timer);
      reject(new RoomError("RTC.00002000", `connection closed (${e.code}) before the join was answered`));
    };
  });
}

// Sends `message` (a join) to `server`, following "redirect" answers (at most MAX_REDIRECTS in a row):
// resolves to {ws, reply, server, redirects} with the "joined" answer; a refusal rejects with a RoomError
// whose `refused` is true.
async function connectJoin(server, message) {
  const redirects = [];
  let ws;
  let reply;
  for (;;) {
    ws = await openSocket(signallingUrl(server));
    ws.send(JSON.stringify(message));
    try {
      reply = await nextMessage(ws, REQUEST_TIMEOUT_MS);
    } catch (err) {
      ws.close();
      throw err;
    }
    if (reply.type !== "redirect") break;
    ws.close();
    redirects.push(reply);
    if (redirects.length > MAX_REDIRECTS) {
      throw new RoomError("RTC.00002000", `redirected more than ${MAX_REDIRECTS} times: ${JSON.stringify(redirects)}`);
    }
    try {
      signallingUrl(reply.url);
    } catch (err) {
      throw new RoomError("RTC.00002000", `redirected to an unusable URL: ${JSON.stringify(reply.url)}`);
    }
    server = reply.url;
  }
  if (reply.type === "error") {
    ws.close();
    const refused = new RoomError(reply.code || "", reply.message || "");
    refused.refused = true;
    throw refused;
  }
  if (reply.type !== "joined") {
    ws.close();
    throw new RoomError("RTC.00002000", `unexpected answer to join: ${JSON.stringify(reply)}`);
  }
  return { ws, reply, server, redirects };
}

/**
 * One participant's connection to a room. Create it with EmberRoom.join().
 *
 * Events (CustomEvent, message in `detail`): every server event by its type (user_joined, user_left,
 * stream_published, stream_unpublished, subscription_ended, removed, dismissed, disconnected, left),
 * plus "subscription" (detail: a Subscription whose mediaStream is ready to attach to a <video>),
 * "participants" (the participants map changed), "reconnecting" and "reconnected" (a lost connection
 * being rejoined, and rejoined: see the top of this file) and "ended" (the final event, or
 * connection_lost).
 */
export class EmberRoom extends EventTarget {
  /**
   * Connect and join. Pass `ctime` + `signature` from your server, or (development only) `appKey` to
   * sign here, or neither when the app has authentication off. Rejects with RoomError if refused.
   */
  static async join(server, options) {
    const { appId, roomId, userId, appKey, nickname, autoSubscribe = true, statsIntervalMs = STATS_INTERVAL_MS } = options;
    // options.rejoinMs: how long a lost connection is rejoined (default 30 s; 0: never).
    const started = performance.now();
    let { ctime, signature } = options;
    if (appKey) {
      ctime = ctime ?? Math.floor(Date.now() / 1000) + DEFAULT_VALIDITY;
      signature = await signJoin(appKey, appId, roomId, userId, ctime);
    }
    const message = {
      type: "join",
      id: 1,
      app_id: appId,
      room_id: roomId,
      user_id: userId,
      ctime: ctime === undefined || ctime === null || ctime === "" ? undefined : String(ctime),
      signature: signature || undefined,
      nickname: nickname || undefined,
      platform: `browser-${navigator.platform || "unknown"}`,
      sdk_version: SDK_VERSION,
      device_model: navigator.userAgent.slice(0, 128),
    };
    const { ws, reply, server: joinedAt, redirects } = await connectJoin(server, message);
    const room = new EmberRoom(ws, reply, autoSubscribe, statsIntervalMs);
    /** The server joined through (a cluster's node hosting the room), and the redirects that led there. */
    room.server = joinedAt;
    room.redirects = redirects;
    /** How long (ms) a lost connection is rejoined (0: never), with which join, through which URL. */
    room.rejoinMs = options.rejoinMs ?? REJOIN_MS;
    room._joinMessage = message;
    room._entry = server;
    room.qos.joined(performance.now() - started);
    return room;
  }

  constructor(ws, joined, autoSubscribe, statsIntervalMs = STATS_INTERVAL_MS) {
    super();
    /** QoS reports over signalling every statsIntervalMs (0: none). */
    this.qos = new QosReporter(this, statsIntervalMs);
    this.roomId = joined.room_id;
    this.userId = joined.user_id;
    this.autoSubscribe = autoSubscribe;
    this._takeAnswer(ws, joined);
    /** stream kind -> {stream, pc, mediaStream, tracks} */
    this.publications = new Map();
    /** subscription id -> Subscription */
    this.subscriptions = new Map();
    /** The subscriber RTCPeerConnection (made by the first subscription), or null. */
    this.subscriberPc = null;
    // mid in the subscriber RTCPeerConnection -> its Subscription, for tracks arriving.
    this._byMid = new Map();
    // Renegotiations of the subscriber RTCPeerConnection run one after the other on this chain.
    this._negotiation = Promise.resolve();
    // subscribe() calls not yet sent: {userId, stream, resolve, reject}.
    this._wanted = [];
    /** The final event once out of the room, else null. */
    this.endedWith = null;
    this._pending = new Map();
    this._ids = 2;
    this.ended = new Promise((resolve) => (this._resolveEnded = resolve));
    // Rejoining: off until join() sets it; the (userId, stream) pairs received, to receive again after.
    this.rejoinMs = 0;
    this._subscribed = new Set();
    this._resubscribe = new Set();
    this._rejoining = false;
    this._leaving = false;
    if (autoSubscribe) {
      // Streams already live at join time.
      queueMicrotask(() => this._subscribeLive(() => true));
    }
  }

  // The session a "joined" answer describes, on its WebSocket (at the join, and again at each rejoin).
  _takeAnswer(ws, joined) {
    this._ws = ws;
    this.sessionId = joined.session_id;
    /** RTCIceServer objects for every RTCPeerConnection of this session (the server's TURN relay), or []. */
    this.iceServers = joined.ice_servers ?? [];
    /** In a cluster, the live nodes' public URLs at the join: where to rejoin if this node is lost. */
    this.nodes = joined.nodes ?? [];
    /** user_id -> {userId, nickname, streams: {camera|screen: {audio, video}}} */
    this.participants = new Map();
    for (const p of joined.participants) {
      const streams = {};
      for (const s of p.streams) streams[s.stream] = { audio: s.audio, video: s.video };
      this.participants.set(p.user_id, { userId: p.user_id, nickname: p.nickname ?? null, streams });
    }
    ws.onmessage = (e) => this._onMessage(JSON.parse(e.data));
    ws.onclose = (e) => this._onClose(e);
    ws.onerror = () => {};
  }

  // Subscribes to the live streams of the others for which `wanted(userId, stream)` holds.
  _subscribeLive(wanted) {
    for (const p of this.participants.values()) {
      for (const stream of Object.keys(p.streams)) {
        if (wanted(p.userId, stream)) this._autoSubscribe(p.userId, stream);
      }
    }
  }

  // -- events ------------------------------------------------------------------------------------

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _onMessage(message) {
    if (message.id !== undefined && this._pending.has(message.id)) {
      const { resolve, timer } = this._pending.get(message.id);
      this._pending.delete(message.id);
      clearTimeout(timer);
      resolve(message);
      return;
    }
    const type = message.type;
    if (type === "user_joined") {
      this.participants.set(message.user_id, { userId: message.user_id, nickname: message.nickname ?? null, streams: {} });
    } else if (type === "user_left") {
      this.participants.delete(message.user_id);
    } else if (type === "stream_published") {
      let peer = this.participants.get(message.user_id);
      if (!peer) {
        peer = { userId: message.user_id, nickname: null, streams: {} };
        this.participants.set(message.user_id, peer);
      }
      peer.streams[message.stream] = { audio: message.audio, video: message.video };
    } else if (type === "stream_unpublished") {
      const peer = this.participants.get(message.user_id);
      if (peer) delete peer.streams[message.stream];
    } else if (type === "subscription_ended") {
      const sub = this.subscriptions.get(message.subscription);
      if (sub) this._endSubscription(sub, message.reason || "ended");
    } else if (type === "subscriber_closed") {
      const pc = this.subscriberPc;
      this.subscriberPc = null;
      this._byMid.clear();
      if (pc) pc.close();
    }
    if (FINAL_EVENTS.includes(type)) this.endedWith = message;
    this._emit(type, message);
    if (["user_joined", "user_left", "stream_published", "stream_unpublished"].includes(type)) {
      this._emit("participants", this.participants);
    }
    if (type === "stream_published" && this._wants(message.user_id, message.stream)) {
      this._autoSubscribe(message.user_id, message.stream);
    }
  }

  _onClose(e) {
    if (!this.endedWith && this.rejoinMs > 0 && !this._leaving) {
      this._failPending("the connection was lost; rejoining");
      this._rejoin(e.code);
      return;
    }
    this._end(this.endedWith || { type: "connection_lost", code: e.code });
  }

  _failPending(why) {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new RoomError("RTC.00002000", why));
    }
    this._pending.clear();
  }

  _end(final) {
    if (this._resolved) return;
    this._resolved = true;
    this.endedWith = final;
    this._failPending(`not in the room any more (${final.type})`);
    this._hangUp();
    this._emit("ended", final);
    this._resolveEnded(final);
  }

  // -- rejoining ---------------------------------------------------------------------------------

  // The connection was lost: join again (elsewhere first, the lost node last), or end with connection_lost.
  async _rejoin(code) {
    this._rejoining = true;
    const lost = this.server;
    this._emit("reconnecting", { type: "reconnecting", server: lost, code });
    // The lost session's connections carry nothing more; the local tracks stay, to be published again.
    const republish = [...this.publications.values()].map((p) => [p.stream, p.mediaStream]);
    for (const publication of this.publications.values()) publication.pc.close();
    this.publications.clear();
    for (const sub of [...this.subscriptions.values()]) this._endSubscription(sub, "reconnecting");
    const pc = this.subscriberPc;
    this.subscriberPc = null;
    this._byMid.clear();
    if (pc) pc.close();
    const strip = (u) => String(u).replace(/\/+$/, "");
    const candidates = [...new Set([this._entry, ...this.nodes, lost].map(strip))].sort(
      (a, b) => (a === strip(lost)) - (b === strip(lost)),
    );
    const deadline = performance.now() + this.rejoinMs;
    let delay = REJOIN_BACKOFF_MS[0];
    let final = null;
    while (!this._leaving && !final && performance.now() < deadline) {
      for (const url of candidates) {
        if (this._leaving || performance.now() >= deadline) break;
        let joined;
        try {
          joined = await connectJoin(url, this._joinMessage);
        } catch (err) {
          if (err.refused) {
            final = { type: "connection_lost", code, error: `${err.code}: ${err.message}` };
            break;
          }
          continue; // that node is down or unreachable: the next one
        }
        if (this._leaving) {
          joined.ws.close();
          break;
        }
        this._rejoining = false;
        this.server = joined.server;
        this.redirects = joined.redirects;
        this._takeAnswer(joined.ws, joined.reply);
        for (const [stream, mediaStream] of republish) {
          await this.publish(stream, mediaStream).catch((err) => this._emit("error", err));
        }
        // Received before: received again, now if live, else when published again (_onMessage).
        this._resubscribe = this._subscribed;
        this._subscribed = new Set();
        this._subscribeLive((userId, stream) => this._wants(userId, stream));
        this._emit("reconnected", { type: "reconnected", server: joined.server });
        return;
      }
      if (final) break;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(delay, deadline - performance.now()))));
      delay = Math.min(delay * 2, REJOIN_BACKOFF_MS[1]);
    }
    this._rejoining = false;
    this._end(final || (this._leaving ? { type: "left", reason: "left while rejoining" } : { type: "connection_lost", code }));
  }

  // Is (userId, stream) to be received on its own: autoSubscribe, or received before a rejoin?
  _wants(userId, stream) {
    return this.autoSubscribe || this._resubscribe.has(`${userId}\u0000${stream}`);
  }

  _autoSubscribe(userId, stream) {
    for (const sub of [...this.subscriptions.values(), ...this._wanted]) {
      if (sub.userId === userId && sub.stream === stream) return;
    }
    this.subscribe(userId, stream).catch((err) => this._emit("error", err));
  }

  // -- requests ----------------------------------------------------------------------------------

  _request(message) {
    if (this.endedWith) return Promise.reject(new RoomError("RTC.00002000", `not in the room any more`));
    const id = this._ids++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new RoomError("RTC.00002000", `no answer to ${message.type}`));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer });
      this._ws.send(JSON.stringify({ ...message, id }));
    }).then((reply) => {
      if (reply.type === "error") throw new RoomError(reply.code || "", reply.message || "");
      return reply;
    });
  }

  ping() {
    return this._request({ type: "ping" });
  }

  /** Publish a MediaStream's tracks (at most one audio, one video) as "camera" or "screen". */
  async publish(stream, mediaStream) {
    const pc = peerConnection(this.iceServers);
    try {
      const video = mediaStream.getVideoTracks()[0];
      const audio = mediaStream.getAudioTracks()[0];
      if (!video && !audio) throw new Error("publish needs a video or an audio track");
      if (video) pc.addTransceiver(video, { direction: "sendonly", streams: [mediaStream] });
      if (audio) pc.addTransceiver(audio, { direction: "sendonly", streams: [mediaStream] });
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const reply = await this._request({ type: "publish", stream, sdp: pc.localDescription.sdp });
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      const publication = { stream, pc, mediaStream, tracks: reply.tracks || [] };
      this.publications.set(stream, publication);
      return publication;
    } catch (err) {
      pc.close();
      throw err;
    }
  }

  /** Ask for the camera and microphone and publish them as "camera"; returns the publication. */
  async publishCamera(constraints = { audio: true, video: { width: 640, height: 360 } }) {
    const mediaStream = await navigator.mediaDevices.getUserMedia(constraints);
    try {
      return await this.publish("camera", mediaStream);
    } catch (err) {
      mediaStream.getTracks().forEach((t) => t.stop());
      throw err;
    }
  }

  /** Ask which screen to share and publish it as "screen"; it is unpublished when the user stops it. */
  async publishScreen(constraints = { video: true, audio: false }) {
    const mediaStream = await navigator.mediaDevices.getDisplayMedia(constraints);
    let publication;
    try {
      publication = await this.publish("screen", mediaStream);
    } catch (err) {
      mediaStream.getTracks().forEach((t) => t.stop());
      throw err;
    }
    const video = mediaStream.getVideoTracks()[0];
    if (video) {
      video.addEventListener("ended", () => {
        if (this.publications.get("screen") === publication) this.unpublish("screen").catch(() => {});
      });
    }
    return publication;
  }

  /** Stop publishing a stream (its local tracks are stopped too). */
  async unpublish(stream) {
    const publication = this.publications.get(stream);
    this.publications.delete(stream);
    try {
      await this._request({ type: "unpublish", stream });
    } finally {
      if (publication) {
        publication.pc.close();
        publication.mediaStream.getTracks().forEach((t) => t.stop());
      }
    }
  }

  /** Receive another participant's stream. Resolves to a Subscription {id, userId, stream, pc,
   *  mediaStream, tracks, ended} once negotiated; also emitted as a "subscription" event. `pc` is the
   *  subscriber RTCPeerConnection, shared by every subscription. Calls made together are sent as one
   *  request, so one renegotiation. */
  subscribe(userId, stream = "camera") {
    return new Promise((resolve, reject) => {
      this._wanted.push({ userId, stream, resolve, reject });
      if (this._wanted.length === 1) this._serialised(() => this._subscribeWanted());
    }).then((sub) => {
      this._subscribed.add(`${userId}\u0000${stream}`);
      return sub;
    });
  }

  // Runs `step` after every renegotiation already queued; a failure does not stop the next ones.
  _serialised(step) {
    const run = this._negotiation.then(step);
    this._negotiation = run.catch(() => {});
    return run;
  }

  async _subscribeWanted() {
    const wanted = this._wanted;
    this._wanted = [];
    if (!wanted.length) return;
    const request =
      wanted.length === 1
        ? { type: "subscribe", user_id: wanted[0].userId, stream: wanted[0].stream }
        : { type: "subscribe", streams: wanted.map((w) => ({ user_id: w.userId, stream: w.stream })) };
    let subs;
    try {
      subs = await this._renegotiate(request);
    } catch (err) {
      if (wanted.length === 1 || this.endedWith) {
        wanted.forEach((w) => w.reject(err));
        return;
      }
      // All or none: ask one by one so that one stream gone does not fail the others.
      for (const w of wanted) {
        try {
          const [sub] = await this._renegotiate({ type: "subscribe", user_id: w.userId, stream: w.stream });
          w.resolve(sub);
        } catch (oneErr) {
          w.reject(oneErr);
        }
      }
      return;
    }
    wanted.forEach((w, i) => w.resolve(subs[i]));
  }

  // Sends a request whose reply may carry the server's offer for the subscriber RTCPeerConnection,
  // answers it, and returns the subscriptions the reply lists (announced with a "subscription" event).
  async _renegotiate(request) {
    const reply = await this._request(request);
    if (reply.sdp && !this.subscriberPc) {
      const pc = peerConnection(this.iceServers);
      // A subscriber RTCPeerConnection that fails carries nothing more: end its subscriptions and have
      // the server drop its side, so the next subscription starts afresh.
      pc.addEventListener("connectionstatechange", () => {
        if (["failed", "closed"].includes(pc.connectionState) && pc === this.subscriberPc && !this.endedWith) {
          this._serialised(() => this._resetSubscriber(pc));
        }
      });
      pc.addEventListener("track", (e) => {
        // First media for the QoS reports: when the track first carries something.
        const kind = e.track.kind;
        if (!e.track.muted) this.qos.firstMedia(kind);
        else e.track.addEventListener("unmute", () => this.qos.firstMedia(kind), { once: true });
        const sub = this._byMid.get(e.transceiver.mid);
        if (sub && this.subscriptions.has(sub.id) && !sub.mediaStream.getTracks().includes(e.track)) {
          sub.mediaStream.addTrack(e.track);
        }
      });
      this.subscriberPc = pc;
    }
    const pc = this.subscriberPc;
    const subs = [];
    for (const entry of reply.subscriptions || []) {
      const sub = {
        id: entry.subscription,
        userId: entry.user_id,
        stream: entry.stream,
        pc,
        mediaStream: new MediaStream(),
        tracks: entry.tracks || [],
        endReason: null,
      };
      sub.ended = new Promise((resolve) => (sub._resolveEnded = resolve));
      for (const track of sub.tracks) this._byMid.set(String(track.mid), sub);
      this.subscriptions.set(sub.id, sub);
      subs.push(sub);
    }
    if (reply.sdp) {
      try {
        await pc.setRemoteDescription({ type: "offer", sdp: reply.sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        await gathered(pc);
        await this._request({ type: "answer", sdp: pc.localDescription.sdp });
      } catch (err) {
        for (const sub of subs) this._endSubscription(sub, "negotiation failed");
        throw err;
      }
    }
    // Streams resumed with no renegotiation (an earlier subscription's, paused since) fire no "track" event.
    for (const transceiver of pc ? pc.getTransceivers() : []) {
      const sub = this._byMid.get(transceiver.mid);
      const track = transceiver.receiver.track;
      if (sub && subs.includes(sub) && track && !sub.mediaStream.getTracks().includes(track)) {
        sub.mediaStream.addTrack(track);
      }
    }
    for (const sub of subs) this._emit("subscription", sub);
    return subs;
  }

  async _resetSubscriber(pc) {
    if (pc !== this.subscriberPc) return;
    this.subscriberPc = null;
    for (const sub of [...this.subscriptions.values()]) {
      if (sub.pc === pc) this._endSubscription(sub, "connection failed");
    }
    this._byMid.clear();
    await this._request({ type: "close_subscriber" }).catch(() => {});
    pc.close();
  }

  /** Stop receiving a stream. */
  async unsubscribe(sub) {
    this._subscribed.delete(`${sub.userId}\u0000${sub.stream}`);
    if (!this.subscriptions.has(sub.id)) return;
    try {
      await this._serialised(() => this._renegotiate({ type: "unsubscribe", subscription: sub.id }));
    } finally {
      this._endSubscription(sub, "unsubscribed");
    }
  }

  _endSubscription(sub, reason) {
    if (!this.subscriptions.delete(sub.id)) return;
    for (const track of sub.tracks) {
      if (this._byMid.get(String(track.mid)) === sub) this._byMid.delete(String(track.mid));
    }
    // The shared RTCPeerConnection stays (its receivers may carry another subscription later, when the
    // server reuses the m-line), so the tracks leave this subscription's MediaStream without being stopped.
    sub.mediaStream.getTracks().forEach((t) => sub.mediaStream.removeTrack(t));
    sub.endReason = reason;
    sub._resolveEnded(reason);
    this._emit("subscription_ended", { subscription: sub.id, userId: sub.userId, stream: sub.stream, reason, sub });
  }

  /** framesDecoded summed over the video streams received (from getStats() inbound-rtp). */
  async framesDecoded() {
    let total = 0;
    if (!this.subscriberPc) return total;
    const stats = await this.subscriberPc.getStats();
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video") total += report.framesDecoded || 0;
    });
    return total;
  }

  /** Leave the room, hang up every PeerConnection and stop local tracks; resolves to the final event. */
  async leave() {
    this._leaving = true;
    if (this._rejoining) {
      this._end({ type: "left", reason: "left while rejoining" });
      return this.endedWith;
    }
    if (!this.endedWith && this._ws.readyState === WebSocket.OPEN) {
      this._ws.send(JSON.stringify({ type: "leave" }));
      const timeout = new Promise((resolve) => setTimeout(resolve, REQUEST_TIMEOUT_MS));
      await Promise.race([this.ended, timeout]);
    }
    this._ws.close();
    this._hangUp();
    return this.endedWith;
  }

  _hangUp() {
    this.qos.stop();
    for (const sub of [...this.subscriptions.values()]) this._endSubscription(sub, sub.endReason || "left the room");
    for (const w of this._wanted) w.reject(new RoomError("RTC.00002000", "not in the room any more"));
    this._wanted = [];
    const pc = this.subscriberPc;
    this.subscriberPc = null;
    if (pc) pc.close();
    for (const publication of this.publications.values()) {
      publication.pc.close();
      publication.mediaStream.getTracks().forEach((t) => t.stop());
    }
    this.publications.clear();
  }
}
