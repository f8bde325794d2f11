"""Backoff, retry, circuit breaker, rate limits and deadlines, in trio's virtual time."""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable

import anyio
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from hft import BrokerRejected, NetworkError, RateLimited, Secret, ValidationError
from hft._resilience import (
    Backoff,
    CircuitBreaker,
    CircuitState,
    RateLimiter,
    TokenBucket,
    deadline,
    retry,
    retrying,
)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """Trio with a clock that jumps straight to the next deadline: sleeps cost no real time."""
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def run_virtual(fn: Callable[[], Awaitable[None]]) -> None:
    """Run an async function in virtual time, for hypothesis tests (which are not async here)."""
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


class Flaky:
    """An async callable that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls: list[float] = []

    async def __call__(self) -> str:
        self.calls.append(anyio.current_time())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def offsets(times: list[float]) -> list[float]:
    return [t - times[0] for t in times]


# --------------------------------------------------------------------------------------------
# Backoff


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    b = Backoff(0.5, 5.0, 2.0, jitter="none")
    assert [b.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert b.attempts == 7
    b.reset()
    assert b.attempts == 0
    assert b.next_delay() == 0.5


def test_backoff_full_jitter_is_reproducible_with_a_seeded_rng() -> None:
    b = Backoff(1.0, 8.0, 2.0, jitter="full", rng=random.Random(42))
    ref = random.Random(42)
    expected = [ref.uniform(0, base) for base in (1.0, 2.0, 4.0, 8.0, 8.0)]
    assert [b.next_delay() for _ in range(5)] == expected


def test_backoff_equal_jitter_keeps_half_the_base() -> None:
    b = Backoff(1.0, 8.0, 2.0, jitter="equal", rng=random.Random(7))
    ref = random.Random(7)
    expected = [base / 2 + ref.uniform(0, base / 2) for base in (1.0, 2.0, 4.0, 8.0)]
    assert [b.next_delay() for _ in range(4)] == expected


def test_backoff_clone_starts_fresh_with_the_same_settings() -> None:
    b = Backoff(0.25, 1.0, 3.0, jitter="none")
    b.next_delay()
    b.next_delay()
    c = b.clone()
    assert (c.initial_s, c.max_s, c.multiplier, c.jitter) == (0.25, 1.0, 3.0, "none")
    assert c.next_delay() == 0.25
    assert b.next_delay() == 1.0


def test_backoff_huge_attempt_counts_do_not_overflow() -> None:
    b = Backoff(1.0, 60.0, 10.0, jitter="none")
    for _ in range(5000):
        b.next_delay()
    assert b.next_delay() == 60.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0},
        {"initial_s": -1},
        {"initial_s": math.inf},
        {"initial_s": 2, "max_s": 1},
        {"max_s": math.inf},
        {"multiplier": 0.5},
        {"jitter": "decorrelated"},
    ],
)
def test_backoff_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        Backoff(**kwargs)  # type: ignore[arg-type]


@given(
    initial=st.floats(1e-3, 10),
    cap_factor=st.floats(1, 100),
    multiplier=st.floats(1, 5),
    jitter=st.sampled_from(["full", "equal", "none"]),
    seed=st.integers(0, 2**32),
    n=st.integers(1, 60),
)
def test_backoff_delays_stay_within_bounds(
    initial: float, cap_factor: float, multiplier: float, jitter: str, seed: int, n: int
) -> None:
    cap = initial * cap_factor
    b = Backoff(initial, cap, multiplier, jitter, rng=random.Random(seed))  # type: ignore[arg-type]
    base = initial
    for _ in range(n):
        d = b.next_delay()
        low = {"full": 0.0, "equal": base / 2, "none": base}[jitter]
        assert low <= d <= base <= cap
        base = min(cap, base * multiplier)


# --------------------------------------------------------------------------------------------
# Retry


@pytest.mark.anyio
async def test_retry_waits_the_backoff_delays_between_attempts() -> None:
    fn = Flaky(NetworkError("down"), NetworkError("down"))
    result = await retry(fn, attempts=5, backoff=Backoff(0.1, 10, 2, jitter="none"))
    assert result == "ok"
    assert offsets(fn.calls) == pytest.approx([0.0, 0.1, 0.3])


@pytest.mark.anyio
async def test_retry_gives_up_after_attempts_with_the_last_error() -> None:
    last = NetworkError("third", code="conn_reset")
    fn = Flaky(NetworkError("first"), NetworkError("second"), last, NetworkError("never"))
    with pytest.raises(NetworkError) as info:
        await retry(fn, attempts=3, backoff=Backoff(1, 10, 2, jitter="none"))
    assert info.value is last
    assert offsets(fn.calls) == pytest.approx([0.0, 1.0, 3.0])


@pytest.mark.anyio
async def test_retry_propagates_a_non_retryable_error_at_once() -> None:
    fn = Flaky(NetworkError("blip"), BrokerRejected("margin"))
    with pytest.raises(BrokerRejected):
        await retry(fn, attempts=10, backoff=Backoff(1, 10, 2, jitter="none"))
    assert offsets(fn.calls) == pytest.approx([0.0, 1.0])


@pytest.mark.anyio
async def test_retry_does_not_retry_programming_errors() -> None:
    fn = Flaky(KeyError("x"))
    with pytest.raises(KeyError):
        await retry(fn, attempts=10)
    assert len(fn.calls) == 1


@pytest.mark.anyio
async def test_retry_never_retries_sooner_than_retry_after() -> None:
    fn = Flaky(RateLimited("slow down", retry_after_s=2.5), RateLimited("again"))
    assert await retry(fn, backoff=Backoff(0.1, 10, 2, jitter="none")) == "ok"
    # 2.5 s as asked, then the backoff's own 0.2 s when no retry_after_s is given.
    assert offsets(fn.calls) == pytest.approx([0.0, 2.5, 2.7])


@pytest.mark.anyio
async def test_retry_keeps_a_longer_backoff_over_a_short_retry_after() -> None:
    fn = Flaky(RateLimited("slow", retry_after_s=0.5))
    await retry(fn, backoff=Backoff(3, 10, 2, jitter="none"))
    assert offsets(fn.calls) == pytest.approx([0.0, 3.0])


@pytest.mark.anyio
async def test_retry_stops_before_a_wait_that_would_pass_the_deadline() -> None:
    fn = Flaky(*(NetworkError(f"down {i}") for i in range(10)))
    start = anyio.current_time()
    with pytest.raises(NetworkError, match="down 2"):
        await retry(fn, attempts=None, deadline_s=5, backoff=Backoff(1, 10, 2, jitter="none"))
    # Calls at 0, 1 and 3; the next wait (4 s) would end at 7 > 5, so it gives up at 3.
    assert offsets(fn.calls) == pytest.approx([0.0, 1.0, 3.0])
    assert anyio.current_time() - start == pytest.approx(3.0)


@pytest.mark.anyio
async def test_retry_cancels_an_attempt_still_running_at_the_deadline() -> None:
    calls = 0

    async def hangs() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(100)

    start = anyio.current_time()
    with pytest.raises(NetworkError) as info:
        await retry(hangs, deadline_s=2.5, what="kite quote")
    assert info.value.code == "timeout"
    assert "kite quote" in info.value.message
    assert anyio.current_time() - start == pytest.approx(2.5)
    assert calls == 1


@pytest.mark.anyio
async def test_retry_uses_a_fresh_copy_of_the_backoff_each_time() -> None:
    shared = Backoff(1, 10, 2, jitter="none")
    for _ in range(2):
        fn = Flaky(NetworkError("x"))
        await retry(fn, backoff=shared)
        assert offsets(fn.calls) == pytest.approx([0.0, 1.0])
    assert shared.attempts == 0


@pytest.mark.anyio
async def test_retry_accepts_a_custom_predicate() -> None:
    fn = Flaky(ValidationError("odd"), ValidationError("odd"))
    result = await retry(
        fn,
        retry_if=lambda e: isinstance(e, ValidationError),
        backoff=Backoff(1, 1, 1, jitter="none"),
    )
    assert result == "ok"
    assert offsets(fn.calls) == pytest.approx([0.0, 1.0, 2.0])


@pytest.mark.anyio
async def test_retry_logs_each_attempt_without_the_error_text() -> None:
    token = Secret("tok-9f8e7d6c5b4a")
    fn = Flaky(NetworkError(f"refused {token.reveal()}", code="conn_refused"))
    with capture_logs() as logs:
        await retry(fn, backoff=Backoff(0.5, 1, 2, jitter="none"), what="kite orders")
    assert logs == [
        {
            "event": "retry.attempt",
            "log_level": "warning",
            "what": "kite orders",
            "attempt": 1,
            "delay_s": 0.5,
            "error": "conn_refused",
        }
    ]
    assert token.reveal() not in repr(logs)


@pytest.mark.anyio
async def test_retry_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="attempts"):
        await retry(Flaky(), attempts=None, deadline_s=None)
    with pytest.raises(ValueError, match="attempts"):
        await retry(Flaky(), attempts=0)


@pytest.mark.anyio
async def test_retrying_decorator_passes_arguments_and_keeps_the_name() -> None:
    seen: list[tuple[int, str, float]] = []

    @retrying(attempts=3, backoff=Backoff(2, 2, 1, jitter="none"))
    async def place(qty: int, *, side: str) -> str:
        """Place it."""
        seen.append((qty, side, anyio.current_time()))
        if len(seen) < 3:
            raise NetworkError("blip")
        return f"{side} {qty}"

    assert await place(5, side="buy") == "buy 5"
    assert [(q, s) for q, s, _ in seen] == [(5, "buy")] * 3
    assert offsets([t for _, _, t in seen]) == pytest.approx([0.0, 2.0, 4.0])
    assert place.__name__ == "place"
    assert place.__doc__ == "Place it."


# --------------------------------------------------------------------------------------------
# Circuit breaker


async def fail() -> None:
    raise NetworkError("down")


async def succeed() -> str:
    return "ok"


def state_of(breaker: CircuitBreaker) -> CircuitState:
    """Read the state afresh (mypy would otherwise keep an earlier assert's narrowing)."""
    return breaker.state


async def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        with pytest.raises(NetworkError, match="down"):
            await breaker.call(fail)


@pytest.mark.anyio
async def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=10, name="kite")
    with capture_logs() as logs:
        await open_breaker(breaker)
    assert breaker.state is CircuitState.OPEN
    assert [e["event"] for e in logs] == ["circuit.opened"]
    assert logs[0]["circuit"] == "kite"

    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    start = anyio.current_time()
    with pytest.raises(NetworkError) as info:
        await breaker.call(counted)
    assert info.value.code == "circuit_open"
    assert "kite" in info.value.message
    assert calls == 0
    assert anyio.current_time() == start  # failing fast does not wait


@pytest.mark.anyio
async def test_breaker_counts_only_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout_s=10)
    for _ in range(5):
        for _ in range(2):
            with pytest.raises(NetworkError):
                await breaker.call(fail)
        assert await breaker.call(succeed) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failures == 0


@pytest.mark.anyio
async def test_breaker_business_errors_prove_the_peer_is_up() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=10)

    async def rejected() -> None:
        raise BrokerRejected("insufficient margin")

    for _ in range(5):
        with pytest.raises(BrokerRejected):
            await breaker.call(rejected)
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.anyio
async def test_breaker_trial_after_the_timeout_closes_on_success() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=10)
    await open_breaker(breaker)
    await anyio.sleep(9.9)
    with pytest.raises(NetworkError, match="circuit_open"):
        await breaker.call(succeed)
    await anyio.sleep(0.1)
    assert await breaker.call(succeed) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failures == 0


@pytest.mark.anyio
async def test_breaker_failed_trial_reopens_for_another_timeout() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=5)
    await open_breaker(breaker)
    await anyio.sleep(5)
    with pytest.raises(NetworkError, match="down"):
        await breaker.call(fail)  # the trial, really called
    assert breaker.state is CircuitState.OPEN
    await anyio.sleep(4.9)
    with pytest.raises(NetworkError, match="circuit_open"):
        await breaker.call(succeed)
    await anyio.sleep(0.1)
    assert await breaker.call(succeed) == "ok"
    assert state_of(breaker) is CircuitState.CLOSED


@pytest.mark.anyio
async def test_breaker_lets_only_one_trial_through() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=1)
    await open_breaker(breaker)
    await anyio.sleep(1)
    trial_started = anyio.Event()
    release = anyio.Event()

    async def slow_trial() -> str:
        trial_started.set()
        await release.wait()
        return "ok"

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, slow_trial)
        await trial_started.wait()
        assert breaker.state is CircuitState.HALF_OPEN
        with pytest.raises(NetworkError, match="trial call is in flight"):
            await breaker.call(succeed)
        release.set()
    assert breaker.state is CircuitState.CLOSED


@pytest.mark.anyio
async def test_breaker_cancelled_trial_frees_the_slot() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=1)
    await open_breaker(breaker)
    await anyio.sleep(1)
    with anyio.move_on_after(0.5):
        await breaker.call(anyio.sleep, 10)
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.call(succeed) == "ok"
    assert state_of(breaker) is CircuitState.CLOSED


@pytest.mark.anyio
async def test_breaker_ignores_late_results_of_calls_admitted_before_it_opened() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout_s=1)
    admitted = anyio.Event()

    async def late_success() -> None:
        admitted.set()
        await anyio.sleep(5)

    async with anyio.create_task_group() as tg:
        tg.start_soon(breaker.call, late_success)
        await admitted.wait()
        await open_breaker(breaker)
    # The old call succeeded at t=5 while the circuit was open: it must not close it.
    assert breaker.state is CircuitState.OPEN


@pytest.mark.anyio
async def test_breaker_as_async_context_manager() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=3)
    for _ in range(2):
        with pytest.raises(NetworkError, match="down"):
            async with breaker:
                raise NetworkError("down")
    ran = False
    with pytest.raises(NetworkError, match="circuit_open"):
        async with breaker:
            ran = True
    assert not ran


def test_breaker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout_s"):
        CircuitBreaker(reset_timeout_s=-1)


# --------------------------------------------------------------------------------------------
# Token bucket


@pytest.mark.anyio
async def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5)
    times = []
    for _ in range(12):
        await bucket.acquire()
        times.append(anyio.current_time())
    expected = [0.0] * 5 + [0.1 * k for k in range(1, 8)]
    assert offsets(times) == pytest.approx(expected)


@pytest.mark.anyio
async def test_bucket_holds_its_average_rate_over_a_long_run() -> None:
    bucket = TokenBucket(rate_per_s=50, burst=10)
    count = 0
    start = anyio.current_time()
    with anyio.move_on_after(60.0 - 1e-6):
        while True:
            await bucket.acquire()
            count += 1
    assert anyio.current_time() - start == pytest.approx(60.0)
    # The burst, then one token every 20 ms for 60 s.
    assert count == 10 + 50 * 60 - 1


@pytest.mark.anyio
async def test_bucket_try_acquire_never_waits() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=3)
    start = anyio.current_time()
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert anyio.current_time() == start
    await anyio.sleep(0.5)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    await anyio.sleep(1.0)
    assert bucket.try_acquire(2)
    assert bucket.available() == pytest.approx(0.0)


@pytest.mark.anyio
async def test_bucket_is_first_come_first_served() -> None:
    # A large request queued first is not overtaken by a small one queued later, even though
    # the small one could be served sooner.
    bucket = TokenBucket(rate_per_s=1, burst=3)
    assert bucket.try_acquire(3)
    start = anyio.current_time()
    served: list[tuple[str, float]] = []

    async def take(name: str, tokens: int, arrive: float) -> None:
        await anyio.sleep(arrive)
        await bucket.acquire(tokens)
        served.append((name, anyio.current_time() - start))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "big", 3, 0.0)
        tg.start_soon(take, "small", 1, 0.01)
        tg.start_soon(take, "later", 1, 0.02)
        await anyio.sleep(1.5)
        assert bucket.waiting == 3
        assert not bucket.try_acquire()  # one token is there, but others wait ahead

    assert [name for name, _ in served] == ["big", "small", "later"]
    assert [t for _, t in served] == pytest.approx([3.0, 4.0, 5.0])


@pytest.mark.anyio
async def test_bucket_cancelled_waiter_hands_its_turn_on() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=3)
    assert bucket.try_acquire(3)
    start = anyio.current_time()
    done: list[float] = []

    async def impatient() -> None:
        with anyio.move_on_after(0.5):
            await bucket.acquire(3)
        done.append(-1)

    async def patient() -> None:
        await anyio.sleep(0.1)
        await bucket.acquire(1)
        done.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(impatient)
        tg.start_soon(patient)
    assert done == [-1, pytest.approx(1.0)]
    assert bucket.waiting == 0


@pytest.mark.anyio
async def test_bucket_rejects_requests_it_could_never_grant() -> None:
    bucket = TokenBucket(rate_per_s=5, burst=4)
    with pytest.raises(ValueError, match="burst"):
        await bucket.acquire(5)
    with pytest.raises(ValueError, match="burst"):
        bucket.try_acquire(0)


def test_bucket_defaults_and_validation() -> None:
    assert TokenBucket(10).burst == 10
    assert TokenBucket(0.2).burst == 1
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, burst=0.5)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 10),
    requests=st.lists(st.tuples(st.floats(0, 2), st.integers(1, 3)), min_size=1, max_size=40),
)
def test_bucket_never_exceeds_burst_plus_rate(
    rate: float, burst: int, requests: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, burst)
    granted: list[tuple[float, int]] = []

    async def client(pause: float, tokens: int) -> None:
        await anyio.sleep(pause)
        tokens = min(tokens, burst)
        await bucket.acquire(tokens)
        granted.append((anyio.current_time(), tokens))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for pause, tokens in requests:
                tg.start_soon(client, pause, tokens)

    run_virtual(main)
    assert len(granted) == len(requests)
    for t0, _ in granted:
        for window in (0.0, 0.5, 1.0, 3.0):
            used = sum(n for t, n in granted if t0 <= t <= t0 + window)
            assert used <= burst + rate * window + 1e-6


# --------------------------------------------------------------------------------------------
# Rate limiter (sliding windows)


@pytest.mark.anyio
async def test_limiter_admits_n_per_window() -> None:
    limiter = RateLimiter((3, 1.0))
    times = []
    for _ in range(8):
        await limiter.acquire()
        times.append(anyio.current_time())
    assert offsets(times) == pytest.approx([0, 0, 0, 1, 1, 1, 2, 2])


@pytest.mark.anyio
async def test_limiter_respects_every_window_at_once() -> None:
    limiter = RateLimiter((2, 1.0), (3, 10.0))
    times = []
    for _ in range(6):
        await limiter.acquire()
        times.append(anyio.current_time())
    assert offsets(times) == pytest.approx([0, 0, 1, 10, 10, 11])


@pytest.mark.anyio
async def test_limiter_kite_limits_over_a_minute() -> None:
    limiter = RateLimiter((10, 1.0), (400, 60.0))
    times = []
    with anyio.move_on_after(120):
        while True:
            await limiter.acquire()
            times.append(anyio.current_time())
    rel = offsets(times)
    # 10 a second for the first 40 s exhausts the minute's 400; the next batch waits until t=60.
    assert rel[399] == pytest.approx(39.0)
    assert rel[400] == pytest.approx(60.0)
    for i, t in enumerate(rel):
        assert sum(1 for u in rel[i:] if u < t + 1.0 - 1e-9) <= 10
        assert sum(1 for u in rel[i:] if u < t + 60.0 - 1e-9) <= 400


@pytest.mark.anyio
async def test_limiter_try_acquire_and_multi_token_requests() -> None:
    limiter = RateLimiter((5, 2.0))
    assert limiter.try_acquire(4)
    assert not limiter.try_acquire(2)
    assert limiter.try_acquire(1)
    assert not limiter.try_acquire()
    start = anyio.current_time()
    await limiter.acquire(5)
    assert anyio.current_time() - start == pytest.approx(2.0)


@pytest.mark.anyio
async def test_limiter_is_first_come_first_served() -> None:
    limiter = RateLimiter((2, 1.0))
    assert limiter.try_acquire(2)
    start = anyio.current_time()
    order: list[tuple[str, float]] = []

    async def take(name: str, tokens: int, arrive: float) -> None:
        await anyio.sleep(arrive)
        await limiter.acquire(tokens)
        order.append((name, anyio.current_time() - start))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "pair", 2, 0.0)
        tg.start_soon(take, "one", 1, 0.1)
    assert [name for name, _ in order] == ["pair", "one"]
    assert [t for _, t in order] == pytest.approx([1.0, 2.0])


def test_limiter_validation() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RateLimiter()
    with pytest.raises(ValueError, match="bad limit"):
        RateLimiter((0, 1.0))
    with pytest.raises(ValueError, match="bad limit"):
        RateLimiter((5, 0.0))

    async def too_many() -> None:
        RateLimiter((10, 1.0), (3, 60.0)).try_acquire(4)

    with pytest.raises(ValueError, match="between 1 and 3"):
        run_virtual(too_many)


@settings(max_examples=60, deadline=None)
@given(
    limits=st.lists(
        st.tuples(st.integers(1, 6), st.sampled_from([0.5, 1.0, 2.5, 10.0])),
        min_size=1,
        max_size=3,
    ),
    requests=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 3)), min_size=1, max_size=40),
)
def test_limiter_holds_every_sliding_window(
    limits: list[tuple[int, float]], requests: list[tuple[float, int]]
) -> None:
    limiter = RateLimiter(*limits)
    cap = min(n for n, _ in limits)
    granted: list[tuple[float, int]] = []

    async def client(pause: float, tokens: int) -> None:
        await anyio.sleep(pause)
        tokens = min(tokens, cap)
        await limiter.acquire(tokens)
        granted.append((anyio.current_time(), tokens))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for pause, tokens in requests:
                tg.start_soon(client, pause, tokens)

    run_virtual(main)
    assert len(granted) == len(requests)
    for n, w in limits:
        for t0, _ in granted:
            assert sum(k for t, k in granted if t0 <= t < t0 + w - 1e-6) <= n


# --------------------------------------------------------------------------------------------
# Deadlines


@pytest.mark.anyio
async def test_deadline_turns_expiry_into_a_network_timeout() -> None:
    start = anyio.current_time()
    with pytest.raises(NetworkError) as info, deadline(1.5, what="kite orders"):
        await anyio.sleep(10)
    assert anyio.current_time() - start == pytest.approx(1.5)
    assert info.value.code == "timeout"
    assert info.value.message == "kite orders timed out after 1.5s"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.anyio
async def test_deadline_works_with_async_with() -> None:
    with pytest.raises(NetworkError, match="timeout: xts login timed out after 2s"):
        async with deadline(2, what="xts login"):
            await anyio.sleep(3)


@pytest.mark.anyio
async def test_deadline_lets_a_fast_block_finish() -> None:
    with deadline(1) as scope:
        await anyio.sleep(0.999)
    assert not scope.cancelled_caught
    with deadline(None):
        await anyio.sleep(3600)


@pytest.mark.anyio
async def test_deadline_explicit_cancel_is_silent() -> None:
    with deadline(5) as scope:
        scope.cancel()
        await anyio.sleep(1)
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_deadline_passes_other_timeouts_through() -> None:
    with pytest.raises(TimeoutError), deadline(5), anyio.fail_after(1):
        await anyio.sleep(2)


def test_deadline_rejects_negative_seconds() -> None:
    with pytest.raises(ValueError, match="seconds"):
        deadline(-1)
