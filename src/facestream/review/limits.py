"""How often sign-in may be tried: per (account, client), per client, and a ceiling per account.

Why this shape (docs/security.md, "Sign-in limits"): a hard lock per account lets anyone lock a
reviewer out by failing five times, and a check made before the slow password hash but counted
after it lets concurrent attempts all pass the check. Here every attempt is counted *before* the
hash, in the same critical section that checks the limits, so N concurrent attempts reach the
hash at most `per_account_client` times; the count is given back only when the password was right.

Three sliding windows of `window_s` (an allowance recovers as attempts age out of it, no lock):

- per (account, client): `per_account_client` guesses; a stranger failing on rita's account uses
  up their own allowance, not rita's;
- per client, all names together: `per_client` guesses, so spraying names from one place stops;
- per account, all clients together: beyond `per_account` guesses the account is under attack
  and each client gets one guess on it per window (a distributed guesser is slowed to one guess
  per address; a reviewer on a client that has not failed on the account still signs in).

Clients are strings made by the web app (an IPv4 address, or an IPv6 /64); state lives in this
process's memory and is pruned as it ages out.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_NAME_KEY = 128
"""Names longer than any valid account name share a key by prefix: bounded memory, same result."""


@dataclass(frozen=True, slots=True)
class SignInLimits:
    """The allowances (counted guesses per window) and the window; defaults as in ReviewSettings."""

    per_account_client: int = 5
    per_client: int = 20
    per_account: int = 50
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if min(self.per_account_client, self.per_client, self.per_account) < 1 or not self.window_s > 0:
            raise ValueError("sign-in allowances must be at least 1 and the window positive")


@dataclass(frozen=True, slots=True)
class Attempt:
    """An admitted attempt, already counted; `forgive` it when the password was right."""

    keys: tuple[tuple[str, str], ...]
    at: float


@dataclass(frozen=True, slots=True)
class Refused:
    """Not admitted: no hash runs. `retry_after_s`: when the tightest limit next lets one through."""

    retry_after_s: float
    reason: str

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class SignInLimiter:
    """Checks and counts sign-in attempts atomically (one lock around check and count)."""

    def __init__(self, limits: SignInLimits | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.limits = limits or SignInLimits()
        self._clock = clock
        self._seen: dict[tuple[str, str], deque[float]] = {}
        """(kind, key) -> times of counted attempts, oldest first; kinds: pair, client, account"""
        self._mutex = threading.Lock()
        self._next_prune = 0.0

    def attempt(self, account: str, client: str) -> Attempt | Refused:
        """Admit and count one attempt, or refuse it (refusals are not counted: waiting always helps)."""
        name = account[:MAX_NAME_KEY]
        pair, by_client, by_account = ("pair", f"{client}\n{name}"), ("client", client), ("account", name)
        lim = self.limits
        with self._mutex:
            now = self._clock()
            self._prune(now)
            pair_times, client_times, account_times = (
                self._live(key, now) for key in (pair, by_client, by_account)
            )
            waits: list[tuple[float, str]] = []
            if len(client_times) >= lim.per_client:
                waits.append((self._until_below(client_times, lim.per_client, now), "client"))
            if len(pair_times) >= lim.per_account_client:
                waits.append((self._until_below(pair_times, lim.per_account_client, now), "account-client"))
            elif pair_times and len(account_times) >= lim.per_account:  # under attack: one guess each
                wait = min(
                    self._until_below(pair_times, 1, now),
                    self._until_below(account_times, lim.per_account, now),
                )
                waits.append((wait, "account"))
            if waits:
                wait, reason = max(waits)
                return Refused(wait, reason)
            for key, times, cap in (
                (pair, pair_times, lim.per_account_client),
                (by_client, client_times, lim.per_client),
                (by_account, account_times, lim.per_account),
            ):
                times.append(now)
                while len(times) > cap:  # only whether the cap is reached matters: keep the newest
                    times.popleft()
                self._seen[key] = times
            return Attempt((pair, by_client, by_account), now)

    def forgive(self, attempt: Attempt) -> None:
        """The password was right: this attempt counts against nothing (earlier failures still do)."""
        with self._mutex:
            for key in attempt.keys:
                times = self._seen.get(key)
                if times is not None and attempt.at in times:
                    times.remove(attempt.at)
                    if not times:
                        del self._seen[key]

    def tracked(self) -> int:
        """How many keys are held (for the memory bound's test)."""
        with self._mutex:
            return len(self._seen)

    def _live(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._seen.get(key, deque())
        while times and times[0] <= now - self.limits.window_s:
            times.popleft()
        return times

    def _until_below(self, times: deque[float], cap: int, now: float) -> float:
        """Seconds until fewer than `cap` of `times` are inside the window."""
        return max(0.0, times[len(times) - cap] + self.limits.window_s - now)

    def _prune(self, now: float) -> None:
        """Drop keys whose attempts all aged out, at most once per tenth of a window."""
        if now < self._next_prune:
            return
        self._next_prune = now + self.limits.window_s / 10
        horizon = now - self.limits.window_s
        for key in [k for k, times in self._seen.items() if not times or times[-1] <= horizon]:
            del self._seen[key]
