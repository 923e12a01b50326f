"""Time-limited TURN credentials and the ICE servers a client is handed in the join answer.

Ember and the relay share one secret and nothing else: Ember makes each joining client a credential in the
TURN REST API scheme (draft-uberti-behave-turn-rest-00, what coturn's ``use-auth-secret`` checks), so the
relay needs no user database and no call to Ember:

- user name ``"{expiry}:{user}"``, ``expiry`` a UNIX time in seconds;
- password ``base64(HMAC-SHA1(secret, user name))``.

The relay refuses a request (Allocate, Refresh, CreatePermission, ChannelBind) whose user name's expiry has
passed, so the lifetime also bounds how long a relayed call can last (``Settings.turn_credential_ttl``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["IceServers", "load_turn_secret", "parse_turn_urls", "turn_credential"]

# RFC 7065 3.1: turn:host[:port][?transport=udp|tcp]; turns: runs over TLS, so over TCP only here
# (DTLS, turns: over UDP, is not offered by browsers).
_TURN_URL = re.compile(
    r"^(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)


def turn_credential(secret: str, user: str, expires_at: int) -> tuple[str, str]:
    """The ``(username, password)`` the relay accepts until ``expires_at`` (UNIX seconds) for ``user``."""
    if ":" in user:
        # The relay takes everything before the first colon as the expiry.
        raise ValueError(f"a TURN user cannot contain ':': {user!r}")
    username = f"{int(expires_at)}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def parse_turn_urls(text: str) -> tuple[str, ...]:
    """Comma-separated ``turn:``/``turns:`` URLs, each checked (``ValueError`` names a bad one)."""
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        match = _TURN_URL.fullmatch(url)
        if match is None:
            raise ValueError(
                f"turn_urls: {url!r} is not a TURN URL (turn:HOST[:PORT][?transport=udp|tcp] or "
                "turns:HOST[:PORT][?transport=tcp])"
            )
        if match["scheme"] == "turns" and match["transport"] == "udp":
            raise ValueError(f"turn_urls: {url!r}: turns: (TLS) runs over TCP only")
        if match["port"] is not None and not 0 < int(match["port"]) < 65536:
            raise ValueError(f"turn_urls: {url!r}: the port must be 1-65535")
    return urls


def load_turn_secret(secret: str, secret_file: str, data_dir: Path | None) -> str:
    """The shared secret: given, else the first line of ``secret_file``, else (``data_dir`` given, for an
    embedded relay) ``turn.key`` there, created owner-only on first use."""
    if secret:
        return secret
    if secret_file:
        try:
            text = Path(secret_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"turn_secret_file: cannot read {secret_file}: {exc}") from None
        first = text.splitlines()[0].strip() if text.strip() else ""
        if not first:
            raise ValueError(f"turn_secret_file: {secret_file} holds no secret")
        return first
    if data_dir is None:
        raise ValueError("the TURN relay needs its shared secret: turn_secret or turn_secret_file")
    path = data_dir / "turn.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        made = secrets.token_urlsafe(32)
        out.write(made + "\n")
    return made


@dataclass(frozen=True)
class IceServers:
    """The relay's URLs and shared secret; :meth:`for_user` gives a client its ``iceServers``."""

    #: ``turn:``/``turns:`` URLs, in the order clients should prefer them (UDP first: least overhead).
    urls: tuple[str, ...]
    #: Kept out of ``repr`` (and so of any log).
    secret: str = field(default="", repr=False)
    #: Seconds each credential stays valid.
    ttl: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.urls and not self.secret:
            raise ValueError("TURN URLs without the relay's shared secret")

    def for_user(self, user: str, now: float) -> list[dict[str, Any]]:
        """``iceServers`` for a client, as WebRTC's ``RTCIceServer`` (``[]`` when there is no relay)."""
        if not self.urls:
            return []
        username, password = turn_credential(self.secret, user, int(now) + self.ttl)
        return [{"urls": list(self.urls), "username": username, "credential": password}]
