"""The resilience kit broker plugins share: backoff, retry, circuit breaker, rate limits, timeouts.

Everything reads time through ``anyio.current_time()`` and waits through ``anyio.sleep()`` (or
cancel-scope deadlines), never the wall clock, so that tests run in trio's virtual time.

- :class:`Backoff` yields exponentially growing, jittered delays.
- :func:`retry` / :func:`retrying` repeat a call on retryable errors (:func:`hft.is_retryable`),
  honouring ``RateLimited.retry_after_s``.
- :class:`CircuitBreaker` stops calling a peer that keeps failing, then probes it.
- :class:`TokenBucket` smooths calls to a rate with a burst; :class:`RateLimiter` enforces
  "N calls in any W seconds" windows exactly, as brokers publish them (Kite: 10/s and 400/min).
- :func:`deadline` bounds a block in time and turns expiry into ``NetworkError(code="timeout")``.
"""

from __future__ import annotations

import abc
import collections
import enum
import functools
import math
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Literal, ParamSpec, TypeAlias, TypeVar

import anyio
import anyio.lowlevel
import sniffio
import structlog
import trio

from hft._errors import NetworkError, RateLimited, is_network_error, is_retryable

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "CircuitState",
    "RateLimiter",
    "TokenBucket",
    "deadline",
    "retry",
    "retrying",
]

T = TypeVar("T")
P = ParamSpec("P")

Jitter: TypeAlias = Literal["full", "equal", "none"]

_log = structlog.get_logger("hft.resilience")

# Virtual-time arithmetic is float addition: a waiter that slept exactly the computed gap can wake
# a few ulps short of it. Treat that as on time rather than sleeping again for 1e-16 s.
_EPS: Final = 1e-9


# --------------------------------------------------------------------------------------------
# Backoff


class Backoff:
    """Exponential backoff with jitter.

    The n-th delay (from 0) is drawn from ``base = min(max_s, initial_s * multiplier**n)``:
    ``"full"`` jitter draws uniformly in ``[0, base]``, ``"equal"`` in ``[base/2, base]``,
    ``"none"`` returns ``base``. Pass a seeded ``rng`` for reproducible delays.
    """

    __slots__ = ("_base", "_rng", "attempts", "initial_s", "jitter", "max_s", "multiplier")

    def __init__(
        self,
        initial_s: float = 0.1,
        max_s: float = 30.0,
        multiplier: float = 2.0,
        jitter: Jitter = "full",
        *,
        rng: random.Random | None = None,
    ) -> None:
        if not (initial_s > 0 and math.isfinite(initial_s)):
            raise ValueError("initial_s must be a positive, finite number of seconds")
        if not (max_s >= initial_s and math.isfinite(max_s)):
            raise ValueError("max_s must be finite and at least initial_s")
        if not (multiplier >= 1 and math.isfinite(multiplier)):
            raise ValueError("multiplier must be finite and at least 1")
        if jitter not in ("full", "equal", "none"):
            raise ValueError(f"jitter must be 'full', 'equal' or 'none', not {jitter!r}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.multiplier = multiplier
        self.jitter: Jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._base = initial_s
        #: How many delays have been handed out since the last reset.
        self.attempts = 0

    def next_delay(self) -> float:
        """The next delay in seconds; each call grows the base until it reaches ``max_s``."""
        base = self._base
        # Grow iteratively rather than computing multiplier**n, which overflows for large n.
        self._base = min(self.max_s, base * self.multiplier)
        self.attempts += 1
        if self.jitter == "full":
            return self._rng.uniform(0.0, base)
        if self.jitter == "equal":
            return base / 2 + self._rng.uniform(0.0, base / 2)
        return base

    def reset(self) -> None:
        """Start again from ``initial_s`` (call it after a success)."""
        self._base = self.initial_s
        self.attempts = 0

    def clone(self) -> Backoff:
        """A fresh backoff with the same settings, sharing the random generator."""
        return Backoff(self.initial_s, self.max_s, self.multiplier, self.jitter, rng=self._rng)

    def __repr__(self) -> str:
        return (
            f"Backoff(initial_s={self.initial_s!r}, max_s={self.max_s!r}, "
            f"multiplier={self.multiplier!r}, jitter={self.jitter!r})"
        )


# --------------------------------------------------------------------------------------------
# Timeouts


_Scope: TypeAlias = "anyio.CancelScope | trio.CancelScope"


class _Deadline:
    """The object :func:`deadline` returns: a cancel scope that fails loudly."""

    __slots__ = ("_scope", "seconds", "what")

    def __init__(self, seconds: float | None, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self._scope: _Scope | None = None

    def __enter__(self) -> _Scope:
        seconds = self.seconds
        # On trio (the host's loop) its own scope and clock: anyio's wrap them, at twice the
        # cost, and the OMS enters one per order.
        if sniffio.current_async_library() == "trio":
            end = math.inf if seconds is None else trio.current_time() + seconds
            self._scope = trio.CancelScope(deadline=end)
        else:
            end = math.inf if seconds is None else anyio.current_time() + seconds
            self._scope = anyio.CancelScope(deadline=end)
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope = self._scope
        assert scope is not None, "deadline() exited without being entered"
        swallowed = bool(scope.__exit__(exc_type, exc, tb))
        # Only our own expiry becomes a timeout; an explicit scope.cancel() stays silent, and a
        # TimeoutError raised by something inside passes through untouched.
        if scope.cancelled_caught and anyio.current_time() >= scope.deadline:
            raise NetworkError(
                f"{self.what} timed out after {self.seconds:g}s", code="timeout"
            ) from None
        return swallowed

    async def __aenter__(self) -> _Scope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, tb)


def deadline(seconds: float | None, *, what: str = "operation") -> _Deadline:
    """Bound the enclosed block to ``seconds``; on expiry raise ``NetworkError(code="timeout")``.

    Usable as ``with deadline(5, what="kite orders"):`` or ``async with ...``; ``None`` means no
    limit (handy for optional config values). The block is cancelled at the deadline, as with
    ``anyio.fail_after``; the context value is the underlying cancel scope.
    """
    if seconds is not None and not seconds >= 0:
        raise ValueError("seconds must be >= 0 or None")
    return _Deadline(seconds, what)


# --------------------------------------------------------------------------------------------
# Retry


async def retry(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int | None = 5,
    deadline_s: float | None = None,
    backoff: Backoff | None = None,
    retry_if: Callable[[BaseException], bool] = is_retryable,
    what: str = "call",
) -> T:
    """Await ``fn()``, retrying with backoff while it raises errors ``retry_if`` accepts.

    Stops after ``attempts`` calls and/or once ``deadline_s`` seconds have passed since the first
    call (at least one of the two must be set). A call still running at the deadline is cancelled
    and ``NetworkError(code="timeout")`` raised; when the next wait would end past the deadline,
    the last error is raised at once instead of sleeping in vain. Errors ``retry_if`` rejects
    propagate immediately. A :class:`~hft.RateLimited` with ``retry_after_s`` is never retried
    sooner than that. ``backoff`` is a template: each call of ``retry`` works on a fresh
    :meth:`~Backoff.clone`, so one can be shared. Each retry logs ``retry.attempt``.
    """
    if attempts is None and deadline_s is None:
        raise ValueError("retry needs attempts, deadline_s or both")
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    delays = backoff.clone() if backoff is not None else Backoff()
    with deadline(deadline_s, what=what):
        end = math.inf if deadline_s is None else anyio.current_time() + deadline_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return await fn()
            except Exception as exc:
                if not retry_if(exc) or (attempts is not None and attempt >= attempts):
                    raise
                delay = delays.next_delay()
                if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
                    delay = max(delay, exc.retry_after_s)
                if anyio.current_time() + delay > end:
                    raise
                _log.warning(
                    "retry.attempt",
                    what=what,
                    attempt=attempt,
                    delay_s=round(delay, 6),
                    error=getattr(exc, "code", type(exc).__name__),
                )
            await anyio.sleep(delay)
    # Only the deadline can cancel this private scope, and its expiry raises.
    raise AssertionError("unreachable")


def retrying(
    *,
    attempts: int | None = 5,
    deadline_s: float | None = None,
    backoff: Backoff | None = None,
    retry_if: Callable[[BaseException], bool] = is_retryable,
    what: str | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorator form of :func:`retry`; ``what`` defaults to the function's qualified name."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        label = what if what is not None else getattr(fn, "__qualname__", "call")

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await retry(
                functools.partial(fn, *args, **kwargs),
                attempts=attempts,
                deadline_s=deadline_s,
                backoff=backoff,
                retry_if=retry_if,
                what=label,
            )

        return wrapper

    return decorate


# --------------------------------------------------------------------------------------------
# Circuit breaker


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Fail fast while a peer keeps failing, then let one trial call through.

    ``failure_threshold`` consecutive failures open the circuit; while open, calls raise
    ``NetworkError(code="circuit_open")`` without running. The first call at least
    ``reset_timeout_s`` after opening is the trial (half-open; concurrent calls still fail fast):
    its success closes the circuit, its failure opens it again for another ``reset_timeout_s``.

    A failure is an exception ``is_failure`` accepts (transport errors by default); any other
    outcome, including a business error such as :class:`~hft.BrokerRejected`, proves the peer
    answered and counts as a success. A cancelled call counts as neither.

    Use ``await breaker.call(fn, *args)`` or ``async with breaker: ...``.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        *,
        name: str = "circuit",
        is_failure: Callable[[BaseException], bool] = is_network_error,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not reset_timeout_s >= 0:
            raise ValueError("reset_timeout_s must be >= 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.name = name
        self._is_failure = is_failure
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = -math.inf
        # The task running the half-open trial, so that the outcome of calls admitted before the
        # circuit opened is not mistaken for the trial's.
        self._trial_task: int | None = None

    @property
    def state(self) -> CircuitState:
        """The state as of the last call; an open circuit turns half-open on the next call."""
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return self._failures

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through the breaker."""
        async with self:
            return await fn(*args, **kwargs)

    async def __aenter__(self) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._state is CircuitState.CLOSED:
            return
        now = anyio.current_time()
        if self._state is CircuitState.OPEN and now >= self._opened_at + self.reset_timeout_s:
            self._state = CircuitState.HALF_OPEN
            _log.info("circuit.half_open", circuit=self.name)
        if self._state is CircuitState.HALF_OPEN and self._trial_task is None:
            self._trial_task = anyio.get_current_task().id
            return
        if self._state is CircuitState.HALF_OPEN:
            detail = "a trial call is in flight"
        else:
            detail = f"next trial in {self._opened_at + self.reset_timeout_s - now:.3g}s"
        raise NetworkError(f"circuit {self.name!r} is open; {detail}", code="circuit_open")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        trial = self._trial_task is not None and self._trial_task == anyio.get_current_task().id
        if trial:
            self._trial_task = None
        if exc is not None and not isinstance(exc, Exception):
            return  # cancelled or shutting down: says nothing about the peer
        failed = exc is not None and self._is_failure(exc)
        if trial:
            if failed:
                self._open()
            else:
                self._close()
        elif self._state is CircuitState.CLOSED:
            if not failed:
                self._failures = 0
            else:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._open()
        # Late outcomes of calls admitted before the circuit opened change nothing.

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = anyio.current_time()
        _log.warning(
            "circuit.opened",
            circuit=self.name,
            failures=self._failures,
            reset_timeout_s=self.reset_timeout_s,
        )

    def _close(self) -> None:
        self._state = CircuitState.CLOSED
        self._failures = 0
        _log.info("circuit.closed", circuit=self.name)


# --------------------------------------------------------------------------------------------
# Rate limits


class _FairGate(abc.ABC):
    """FIFO admission shared by the limiters: only the head waiter watches the clock."""

    def __init__(self) -> None:
        self._queue: collections.deque[anyio.Event] = collections.deque()

    @abc.abstractmethod
    def _take(self, tokens: int, now: float) -> float:
        """Take ``tokens`` and return 0, or take nothing and return the seconds to wait."""

    @abc.abstractmethod
    def _check(self, tokens: int) -> None:
        """Raise ValueError for a request that could never be granted."""

    def try_acquire(self, tokens: int = 1) -> bool:
        """Take ``tokens`` now if possible; never jumps ahead of callers already waiting."""
        self._check(tokens)
        if self._queue:
            return False
        return self._take(tokens, anyio.current_time()) <= 0

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until ``tokens`` are available, in first-come first-served order, and take them."""
        self._check(tokens)
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not self._queue and self._take(tokens, anyio.current_time()) <= 0:
            # Tokens are taken: do not let a cancellation here lose them.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        turn = anyio.Event()
        self._queue.append(turn)
        try:
            if self._queue[0] is not turn:
                await turn.wait()
            # Tokens come back with time alone, so there is no event to wait on: sleep the gap.
            while (wait := self._take(tokens, anyio.current_time())) > 0:  # noqa: ASYNC110
                await anyio.sleep(wait)
        finally:
            # Leave the queue whether served or cancelled, and hand the turn to the next waiter.
            was_head = self._queue[0] is turn
            self._queue.remove(turn)
            if was_head and self._queue:
                self._queue[0].set()

    @property
    def waiting(self) -> int:
        """How many callers are waiting in :meth:`acquire`."""
        return len(self._queue)


class TokenBucket(_FairGate):
    """Allow ``rate_per_s`` tokens a second on average, with bursts of up to ``burst``.

    The bucket starts full. ``burst`` defaults to ``max(1, rate_per_s)``. Waiters are served in
    arrival order. Note that a bucket admits up to ``burst + rate_per_s * W`` tokens in any W
    seconds; to stay under a broker's "N per window" limit use :class:`RateLimiter`.
    """

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        super().__init__()
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError("rate_per_s must be a positive, finite number")
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        if not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ValueError("burst must be finite and at least 1")
        self._tokens = self.burst
        # Set on first use: the bucket may be built before any event loop runs.
        self._updated: float | None = None

    def _check(self, tokens: int) -> None:
        if not 1 <= tokens <= self.burst:
            raise ValueError(f"tokens must be between 1 and burst ({self.burst:g})")

    def _refill(self, now: float) -> None:
        if self._updated is not None:
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
        self._updated = now

    def _take(self, tokens: int, now: float) -> float:
        self._refill(now)
        if self._tokens + _EPS >= tokens:
            self._tokens = max(0.0, self._tokens - tokens)
            return 0.0
        return (tokens - self._tokens) / self.rate_per_s

    def available(self) -> float:
        """Tokens in the bucket now (needs a running event loop)."""
        self._refill(anyio.current_time())
        return self._tokens

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_s={self.rate_per_s!r}, burst={self.burst!r})"


class RateLimiter(_FairGate):
    """Stay within several "at most N calls in any W seconds" limits at once.

    ``RateLimiter((10, 1.0), (400, 60.0))`` is Kite's published limit. Each window keeps the
    times of its last N admissions, so the limit holds over every sliding window, which also
    satisfies a broker counting in fixed windows. A call waits until every window has room;
    waiters are served in arrival order. Widen W a little (``(10, 1.1)``) to absorb network
    jitter between our clock and the broker's.
    """

    def __init__(self, *limits: tuple[int, float]) -> None:
        super().__init__()
        if not limits:
            raise ValueError("RateLimiter needs at least one (calls, window_s) limit")
        for calls, window_s in limits:
            if calls < 1 or not (window_s > 0 and math.isfinite(window_s)):
                raise ValueError(f"bad limit ({calls!r}, {window_s!r}): need calls>=1, window_s>0")
        self.limits = tuple((int(calls), float(window_s)) for calls, window_s in limits)
        self._stamps = [collections.deque[float]() for _ in self.limits]
        self._max_tokens = min(calls for calls, _ in self.limits)

    def _check(self, tokens: int) -> None:
        if not 1 <= tokens <= self._max_tokens:
            raise ValueError(f"tokens must be between 1 and {self._max_tokens}")

    def _take(self, tokens: int, now: float) -> float:
        wait = 0.0
        for (calls, window_s), stamps in zip(self.limits, self._stamps, strict=True):
            while stamps and stamps[0] + window_s <= now + _EPS:
                stamps.popleft()
            excess = len(stamps) + tokens - calls
            if excess > 0:
                # The excess-th oldest admission must leave the window first.
                wait = max(wait, stamps[excess - 1] + window_s - now)
        if wait > 0:
            return wait
        for stamps in self._stamps:
            stamps.extend([now] * tokens)
        return 0.0

    def __repr__(self) -> str:
        return f"RateLimiter{self.limits!r}"
