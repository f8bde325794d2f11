"""Per-client request limits: one token bucket per user, or per address when unauthenticated."""

from __future__ import annotations

import math
from collections import OrderedDict

from hft._resilience import TokenBucket

__all__ = ["RateLimits"]


class _Buckets:
    """Token buckets by key; the least recently used are dropped past ``max_keys``.

    A dropped bucket is rebuilt full, which can only be generous: the cap bounds memory when
    many addresses come and go, and a client active enough to matter stays recently used.
    """

    def __init__(self, rate_per_s: float, burst: float, max_keys: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def admit(self, key: str) -> float:
        """Take a token for ``key``: 0 when admitted, else the seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.try_acquire():
            return 0.0
        return max(0.0, (1 - bucket.available()) / self.rate_per_s)


class RateLimits:
    """The limits of one app: authenticated users and anonymous addresses are counted apart."""

    def __init__(
        self,
        user_rate_per_s: float,
        user_burst: float,
        anonymous_rate_per_s: float,
        anonymous_burst: float,
        *,
        max_keys: int = 10_000,
    ) -> None:
        self._users = _Buckets(user_rate_per_s, user_burst, max_keys)
        self._anonymous = _Buckets(anonymous_rate_per_s, anonymous_burst, max_keys)

    def admit_user(self, username: str) -> float:
        return self._users.admit(username)

    def admit_anonymous(self, address: str) -> float:
        return self._anonymous.admit(address)


def retry_after_header(wait_s: float) -> str:
    """``Retry-After`` in whole seconds, rounded up, never 0 (a client may not retry at once)."""
    return str(max(1, math.ceil(wait_s)))
