"""Web-hooks: what a hook is (``webhooks:`` in a pipeline file, ``POST .../webhooks``), and
how its deliveries are signed and checked. Pure: the delivery itself is
:mod:`plexa.edges.webhooks`. See ``docs/web.md``.

A delivery is a JSON POST whose body is ``{run, kind, seq, t, data}`` (``data`` is the
event's document, as on the events endpoint), with the headers::

    X-Plexa-Event: KIND
    X-Plexa-Delivery: ID                  (the same on every retry of one event)
    X-Plexa-Timestamp: UNIX_SECONDS       (when this attempt was sent)
    X-Plexa-Signature-256: sha256=HEX     (HMAC-SHA256 of "TIMESTAMP." + body, keyed by the secret)
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import msgspec

__all__ = [
    "HOOK_KINDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookSpec",
    "hook_problems",
    "sign",
    "verify_signature",
]

HOOK_KINDS: dict[str, str] = {
    "failure": "failure",
    "restart": "restarted",
    "restarted": "restarted",
    "state": "state",
    "progress": "progress",
    "improved": "improved",
    "aborted": "aborted",
    "run": "run",
    "warning": "warning",
    "job": "job",
    "log": "log",
}
"""The event kinds a hook may ask for (as written in its ``events``) -> the event kind sent
on the events endpoint (``restart`` is ``restarted`` there)."""

SIGNATURE_HEADER = "X-Plexa-Signature-256"
TIMESTAMP_HEADER = "X-Plexa-Timestamp"


class WebhookSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One web-hook: where to POST which events, and the key that signs them."""

    url: str
    """``http://`` or ``https://`` URL the events are POSTed to."""
    events: tuple[str, ...] = ("failure", "restart")
    """Kinds to send (keys of :data:`HOOK_KINDS`)."""
    secret: str = ""
    """The HMAC-SHA256 key; empty: unsigned (refused unless ``unsigned: true``)."""
    secret_env: str = ""
    """Or: the environment variable that holds the key (read when delivery starts, so the
    key is not in the file or in the run's config that clients see)."""
    unsigned: bool = False
    """Allow a hook without a secret (its receiver cannot tell forged deliveries)."""
    queue: int = 1000
    """Events waiting for delivery at most; when full the oldest is dropped (and counted)."""
    timeout_s: float = 5.0
    """One attempt's deadline: a receiver that does not answer in time counts as failed."""
    max_attempts: int = 5
    """Attempts per event (the first and the retries) before it is given up (and counted)."""
    backoff_s: float = 0.5
    """Wait before the first retry; it doubles after each failure, up to 30 s."""


def hook_problems(hook: WebhookSpec) -> list[str]:
    """What is wrong with ``hook`` (empty if nothing), each a sentence naming the field."""
    problems = []
    parts = urlsplit(hook.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"url: {hook.url!r} is not an http:// or https:// URL")
    unknown = [k for k in hook.events if k not in HOOK_KINDS]
    if unknown or not hook.events:
        problems.append(f"events: {unknown or 'none'} (known: {', '.join(HOOK_KINDS)})")
    if not hook.secret and not hook.secret_env and not hook.unsigned:
        problems.append("secret: needed to sign deliveries (or say unsigned: true)")
    if hook.secret and hook.secret_env:
        problems.append("secret, secret_env: give one of them")
    if hook.queue < 1 or hook.max_attempts < 1:
        problems.append("queue and max_attempts must be at least 1")
    if hook.timeout_s <= 0 or hook.backoff_s < 0:
        problems.append("timeout_s must be > 0 and backoff_s >= 0")
    return problems


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = 300.0
) -> bool:
    """True if ``body`` was signed with ``secret`` less than ``tolerance_s`` ago (a receiver's
    check; ``headers`` are looked up case-insensitively)."""
    lower = {k.lower(): v for k, v in headers.items()}
    stamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    given = lower.get(SIGNATURE_HEADER.lower(), "")
    try:
        age = abs(time.time() - float(stamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(given, sign(secret, stamp, body))
