"""Delivery of the outbox: signed POSTs to each app's record callback URL, at least once, in order per job.

- An event is sent when it is ready, due, and every earlier event of its job is finished (delivered or
  given up): a job's events arrive in order, one at a time.
- A 2xx answer within ``timeout`` (10 s, spec 4.3) is delivery. Anything else (another status, a
  redirect, which is never followed, a timeout, a refused connection) is retried after a capped,
  jittered exponential backoff, for ``retry_window`` (at least 24 h) from the first attempt; then the
  event is given up and that is recorded (``gave_up_at``, ``last_error``) and logged.
- All state is in the database: a restarted process (or another node on the same PostgreSQL) carries on.
  An event being sent is leased (its ``next_attempt_at`` pushed past the timeout), so two loops never
  send it at once, and a process that died mid-send is retried once the lease runs out.
- The body is sent byte for byte as stored; with the app's ``auth_key`` it is signed (``X-Rtc-*``).
- Each attempt first vets the URL with the outbound policy (``domain.outbound``): its host is resolved
  again and every answer judged, and the POST goes to a vetted address (``Host``, TLS SNI and certificate
  check keep the URL's host name), so a DNS answer that changed since the URL was saved cannot take the
  callback to a loopback, private or metadata address. A refused attempt is recorded in the event's
  ``last_error`` and logged like any failed one, and retried (the answer may change back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx
from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from emberrtc.callbacks.outbox import subscribed, valid_callback_url
from emberrtc.callbacks.signature import signed_headers
from emberrtc.domain.background import BackgroundTask
from emberrtc.domain.clock import Clock
from emberrtc.domain.outbound import HTTP_SCHEMES, OutboundPolicy, OutboundRefused, Vetted
from emberrtc.domain.redaction import mask_urls
from emberrtc.domain.retry import Backoff
from emberrtc.domain.secrets import SecretBox
from emberrtc.store.database import Database
from emberrtc.store.models import App, CallbackEvent

log = logging.getLogger(__name__)

USER_AGENT = "Ember-RTC-Callback/1"


@dataclass(frozen=True)
class _Claimed:
    event_id: str
    job_id: str
    event_type: str
    body: str
    attempts: int
    first_attempt_at: float
    url: str | None
    auth_key: str | None
    skip_reason: str | None


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    status: int | None = None
    error: str | None = None
    #: Retrying cannot help (no callback URL any more, unsubscribed, app deleted).
    final: bool = False


def _heads() -> list[ColumnElement[bool]]:
    """Ready, unfinished events with no unfinished earlier event of the same job."""
    earlier = aliased(CallbackEvent)
    blocked = exists().where(
        earlier.job_id == CallbackEvent.job_id,
        earlier.finished.is_(False),
        earlier.sequence < CallbackEvent.sequence,
    )
    return [CallbackEvent.finished.is_(False), CallbackEvent.ready.is_(True), ~blocked]


class CallbackDelivery:
    """The delivery loop; a background task between ``start()`` and ``stop()``."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        clock: Clock,
        *,
        backoff: Backoff,
        timeout: float = 10.0,
        retry_window: float = 24 * 3600,
        concurrency: int = 16,
        poll_interval: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        outbound: OutboundPolicy,
    ) -> None:
        self._db = db
        self._outbound = outbound
        self._box = box
        self._clock = clock
        self._backoff = backoff
        self.timeout = timeout
        self.retry_window = retry_window
        self._concurrency = max(1, concurrency)
        self._poll = poll_interval
        # A claimed event is not offered again before this: longer than any one attempt can take.
        self._lease = timeout + 30.0
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()
        self._loop = BackgroundTask("ember-callback-delivery", self._run)
        self._inflight: dict[str, asyncio.Task[None]] = {}

    # --- lifecycle -------------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=False,  # a redirect is not delivery, and never followed
                trust_env=False,  # no proxies from the environment: callbacks go where the app said
                timeout=httpx.Timeout(self.timeout),
                headers={"User-Agent": USER_AGENT},
                # Connections are made to vetted addresses, pooled by address: a connection verified for one
                # host name is not reused for another name at that address.
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._client

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        """Stop sending. Events cut off mid-send are offered again at once to the next loop."""
        await self._loop.stop()
        cut = list(self._inflight)
        for t in list(self._inflight.values()):
            t.cancel()
        for t in list(self._inflight.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._inflight.clear()
        if cut:
            now = self._clock.now()

            def unlease(s: Session) -> None:
                s.execute(
                    update(CallbackEvent)
                    .where(CallbackEvent.event_id.in_(cut), CallbackEvent.finished.is_(False))
                    .values(next_attempt_at=now)
                )

            with contextlib.suppress(Exception):
                await self._db.run(unlease)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look for due events now (after an enqueue committed, or after moving a test clock)."""
        self._wake.set()

    # --- the outbox ------------------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[_Claimed]:
        now = self._clock.now()
        lease_until = now + self._lease
        box = self._box

        def work(s: Session) -> list[_Claimed]:
            q = (
                select(CallbackEvent)
                .where(*_heads(), CallbackEvent.next_attempt_at <= now)
                .order_by(CallbackEvent.next_attempt_at, CallbackEvent.created_at)
                .limit(limit)
            )
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True, of=CallbackEvent)
            out = []
            for ev in s.scalars(q).all():
                # ``attempts`` counts finished attempts (recorded with their outcome); this is the next one.
                if ev.first_attempt_at is None:
                    ev.first_attempt_at = now
                ev.next_attempt_at = lease_until
                app = s.get(App, ev.app_id)
                url = app.record_callback_url if app is not None else None
                key = None
                skip = None
                if app is None:
                    skip = "the app no longer exists"
                elif not subscribed(app, ev.event_type):
                    skip = "the app no longer has a record callback subscribed to this event"
                elif not valid_callback_url(url):
                    skip = f"invalid callback URL {url!r} (must be http:// or https://)"
                elif app.record_callback_auth_key_encrypted:
                    key = box.open(app.record_callback_auth_key_encrypted)
                out.append(
                    _Claimed(
                        event_id=ev.event_id,
                        job_id=ev.job_id,
                        event_type=ev.event_type,
                        body=ev.body,
                        attempts=ev.attempts + 1,
                        first_attempt_at=ev.first_attempt_at,
                        url=url,
                        auth_key=key,
                        skip_reason=skip,
                    )
                )
            return out

        return await self._db.run(work)

    async def _next_due(self) -> float | None:
        def work(s: Session) -> float | None:
            return s.scalar(select(func.min(CallbackEvent.next_attempt_at)).where(*_heads()))

        return await self._db.run(work)

    async def _record(self, c: _Claimed, outcome: _Outcome) -> None:
        now = self._clock.now()
        give_up = outcome.final or (not outcome.delivered and now - c.first_attempt_at >= self.retry_window)
        delay = self._backoff.delay(c.attempts)

        def work(s: Session) -> None:
            ev = s.get(CallbackEvent, c.event_id, with_for_update=True)
            if ev is None or ev.finished:
                return
            ev.attempts += 1
            ev.last_status = outcome.status
            ev.last_error = outcome.error
            if outcome.delivered:
                ev.finished, ev.delivered_at = True, now
            elif give_up:
                ev.finished, ev.gave_up_at = True, now
            else:
                ev.next_attempt_at = now + delay

        await self._db.run(work)
        if outcome.delivered:
            log.info("callback %s %s of job %s delivered (attempt %d)", c.event_type, c.event_id, c.job_id, c.attempts)
        elif give_up:
            log.error(
                "callback %s %s of job %s given up after %d attempts: %s",
                c.event_type,
                c.event_id,
                c.job_id,
                c.attempts,
                outcome.error,
            )
        else:
            log.warning(
                "callback %s of job %s failed (attempt %d, retry in %.0f s): %s",
                c.event_id,
                c.job_id,
                c.attempts,
                delay,
                outcome.error,
            )

    async def _post(self, c: _Claimed) -> _Outcome:
        if c.skip_reason is not None:
            return _Outcome(False, error=c.skip_reason, final=True)
        assert c.url is not None
        body = c.body.encode()
        headers = {"Content-Type": "application/json", **signed_headers(c.auth_key, body, self._clock.now())}
        try:
            async with asyncio.timeout(self.timeout):  # the whole exchange, not each phase, within the timeout
                vetted = await self._outbound.vet_async(c.url, HTTP_SCHEMES)
                r = await self._send(vetted, body, headers)
        except OutboundRefused as exc:
            return _Outcome(False, error=f"refused by the outbound policy: {exc.detail}")
        except TimeoutError:
            return _Outcome(False, error=f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            # The message can quote the URL (an invalid one, say): its user-info and query stay out of the
            # log and of the stored last error.
            return _Outcome(False, error=mask_urls(f"{type(exc).__name__}: {exc}")[:2000])
        if 200 <= r.status_code < 300:
            return _Outcome(True, status=r.status_code)
        hint = " (redirects are not followed)" if 300 <= r.status_code < 400 else ""
        return _Outcome(False, status=r.status_code, error=f"HTTP {r.status_code}{hint}")

    async def _send(self, vetted: Vetted, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST to the first vetted address that takes the connection (never to a fresh resolution of the
        name), with ``Host`` and, for https, SNI and the certificate check for the URL's host name."""
        d = vetted.destination
        headers = {**headers, "Host": d.host_header}
        extensions = {"sni_hostname": d.host} if d.scheme == "https" and d.ip is None else {}
        for i, ip in enumerate(vetted.addresses):
            try:
                return await self._http().post(d.with_address(ip), content=body, headers=headers, extensions=extensions)
            except httpx.ConnectError:
                if i == len(vetted.addresses) - 1:
                    raise
        raise AssertionError("a vetted destination has at least one address")

    async def post_once(self, url: str, auth_key: str | None, body: bytes) -> tuple[int | None, str | None]:
        """One POST of ``body`` to ``url`` made exactly as an event's attempt is (outbound policy, signature,
        timeout, no redirects), outside the outbox: nothing is recorded or retried (the console's test
        event). Returns the receiver's HTTP status (None without an answer) and why it is not delivery."""
        attempt = _Claimed("", "", "", body.decode(), 0, self._clock.now(), url, auth_key, None)
        outcome = await self._post(attempt)
        return outcome.status, None if outcome.delivered else outcome.error

    async def _deliver(self, c: _Claimed) -> None:
        await self._record(c, await self._post(c))

    # --- passes ------------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Send every event that is due now (up to ``concurrency``) and wait for the answers."""
        claimed = await self._claim(self._concurrency)
        await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    def _spawn(self, c: _Claimed) -> None:
        task = asyncio.create_task(self._deliver(c), name=f"ember-callback-{c.event_id}")
        self._inflight[c.event_id] = task

        def done(t: asyncio.Task[None]) -> None:
            self._inflight.pop(c.event_id, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("callback %s: delivery failed unexpectedly", c.event_id, exc_info=t.exception())
            self._wake.set()  # the job's next event may be due now

        task.add_done_callback(done)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            free = self._concurrency - len(self._inflight)
            due: float | None = None
            try:
                claimed = await self._claim(free) if free > 0 else []
                for c in claimed:
                    self._spawn(c)
                if claimed and len(self._inflight) < self._concurrency:
                    continue  # more may be due right now
                due = await self._next_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unreachable; try again later
                log.exception("callback delivery pass failed")
            # Due but not claimable (another node holds it) or at capacity: a finishing send or an
            # enqueue wakes us; otherwise look again shortly.
            full = len(self._inflight) >= self._concurrency
            wait = self._poll if due is None or full else min(self._poll, max(0.05, due - self._clock.now()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
