"""Signed-in reviewers: random session tokens with idle and absolute expiry, and a CSRF token each.

Sessions live in the review service's memory only (a restart signs everyone out; nothing to
steal from disk). The cookie holds a 256-bit random token; the server keeps only its sha256,
so even a memory dump does not hand out live cookies. Each session has its own CSRF token,
required on every POST.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Session:
    reviewer: str
    csrf: str
    started_at: float
    seen_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, *, idle_s: float, max_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_s = idle_s
        self._max_s = max_s
        self._clock = clock
        self._by_digest: dict[str, Session] = {}
        self._mutex = threading.Lock()

    @property
    def max_s(self) -> float:
        return self._max_s

    def start(self, reviewer: str) -> tuple[str, Session]:
        """A new session: (the cookie token, the session)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(reviewer, secrets.token_urlsafe(32), now, now)
        with self._mutex:
            self._by_digest[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie token (and mark it used), or None."""
        if not token:
            return None
        key = _digest(token)
        now = self._clock()
        with self._mutex:
            session = self._by_digest.get(key)
            if session is None:
                return None
            if now - session.seen_at > self._idle_s or now - session.started_at > self._max_s:
                del self._by_digest[key]
                return None
            session = replace(session, seen_at=now)
            self._by_digest[key] = session
            return session

    def end(self, token: str | None) -> None:
        if token:
            with self._mutex:
                self._by_digest.pop(_digest(token), None)

    def end_all_of(self, reviewer: str) -> int:
        with self._mutex:
            keys = [k for k, s in self._by_digest.items() if s.reviewer == reviewer]
            for key in keys:
                del self._by_digest[key]
        return len(keys)

    def sweep(self) -> None:
        now = self._clock()
        with self._mutex:
            for key, s in list(self._by_digest.items()):
                if now - s.seen_at > self._idle_s or now - s.started_at > self._max_s:
                    del self._by_digest[key]


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf.encode(), (submitted or "").encode())
