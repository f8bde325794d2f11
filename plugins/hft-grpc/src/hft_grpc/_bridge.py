"""Calls from the gRPC server's asyncio thread into the host's trio loop, without blocking either.

grpcio's server speaks asyncio; the host runs trio, and nothing of the host (OMS, hub, auth) is
thread-safe. So every call into the host runs on the host's loop: the asyncio side queues it and
awaits an asyncio future, which the trio side settles. Neither loop ever waits on the other.
(anyio's ``BlockingPortal`` would block the asyncio thread for a turn of the trio loop on every
call.)

Waking the other thread costs more than most calls (a socket write, and the GIL changing
hands), so wake-ups are shared: the calls made in one turn of the asyncio loop reach the trio
loop together, and results reach the asyncio loop together while it has not yet run the
previous hand-over. Unary calls each run as a trio task; a :class:`Pull` (a stream's source)
keeps one trio task for its whole life and runs its function again at each ``next``.

Cancelling the awaiting asyncio task (a client gone, a deadline passed) cancels the trio side,
unless the call was made with ``shield=True``: a trading call, once begun, runs to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
import trio

from hft import NetworkError
from hft._logging import bind_correlation_id, correlation_id

__all__ = ["Bridge", "Pull"]

T = TypeVar("T")
Call = Callable[..., Coroutine[Any, Any, Any]]
_Result = tuple[asyncio.Future[Any], Any, BaseException | None, "Call | None"]


def _shutting_down() -> NetworkError:
    return NetworkError("the host is shutting down", code="shutting_down")


class _Job:
    """One call: its asyncio future, and the trio cancel scope it runs in once started."""

    __slots__ = ("args", "cancelled", "correlation_id", "discard", "fn", "future", "scope")

    def __init__(
        self,
        future: asyncio.Future[Any] | None,
        fn: Call,
        args: tuple[Any, ...],
        discard: Call | None = None,
    ) -> None:
        self.future = future  # None: nobody waits for the result
        self.fn = fn
        self.args = args
        self.discard = discard
        self.correlation_id = correlation_id()  # the caller's, bound again on the host's loop
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False

    def cancel(self) -> None:  # on the trio thread
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class Pull(Generic[T]):
    """``await fn(arg)`` on the host's loop at each :meth:`next`, from one long-lived trio task.

    For a stream's source: one call at a time, so nothing is taken from the source until the
    previous result has been handed on. Made by :meth:`Bridge.pull`; :meth:`close` when done.
    """

    def __init__(self, bridge: Bridge, fn: Callable[[Any], Coroutine[Any, Any, T]], arg: Any):
        self._bridge = bridge
        self._fn = fn
        self._arg = arg
        self._future: asyncio.Future[T] | None = None
        self._wanted: anyio.Event | None = None  # trio side
        self._scope: anyio.CancelScope | None = None  # trio side
        self._closed = False
        self._correlation_id = correlation_id()

    async def next(self) -> T:
        """The next result (waiting for the host to have one)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._future = future
        self._bridge._to_trio.put(self._want)
        try:
            return await future
        except asyncio.CancelledError:
            self.close()
            raise

    def close(self) -> None:
        """Stop the trio task (cancelling a call under way); idempotent."""
        if not self._closed:
            self._closed = True
            self._bridge._to_trio.put(self._stop)

    # The trio side ------------------------------------------------------------------------------

    def _want(self) -> None:
        if self._wanted is None:
            self._wanted = anyio.Event()
            self._wanted.set()
            self._bridge._tasks.start_soon(self._loop)
        else:
            self._wanted.set()

    def _stop(self) -> None:
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        elif self._wanted is not None:
            self._wanted.set()  # the task has not begun: let it see it is closed

    async def _loop(self) -> None:
        bridge = self._bridge
        with _bound(self._correlation_id), anyio.CancelScope() as scope:
            self._scope = scope
            while True:
                assert self._wanted is not None
                await self._wanted.wait()
                if self._closed:
                    break
                self._wanted = anyio.Event()
                future = self._future
                assert future is not None
                try:
                    value = await self._fn(self._arg)
                except Exception as exc:
                    bridge._settle(future, None, exc)
                    return
                bridge._settle(future, value, None)
            return
        if not self._closed and self._future is not None:
            bridge._settle(self._future, None, _shutting_down())


def _bound(value: str | None) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext() if value is None else bind_correlation_id(value)


class _ToTrio:
    """Callables to run on the trio loop, handed over once per turn of the asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken) -> None:
        self._loop = loop
        self._token = token
        self._items: list[Callable[[], None]] = []

    def put(self, item: Callable[[], None]) -> None:  # on the asyncio thread
        self._items.append(item)
        if len(self._items) == 1:
            self._loop.call_soon(self._send)

    def _send(self) -> None:
        items, self._items = self._items, []
        with contextlib.suppress(trio.RunFinishedError):  # the host is gone: nobody to run them
            self._token.run_sync_soon(functools.partial(_run_each, items))


def _run_each(items: list[Callable[[], None]]) -> None:
    for item in items:
        item()


class Bridge:
    """Runs coroutine functions on the host's trio loop for code on one other thread's asyncio
    loop. Made on the trio side with the task group the calls run in, then :meth:`attach`-ed
    from the asyncio thread.
    """

    def __init__(self, token: trio.lowlevel.TrioToken, tasks: anyio.abc.TaskGroup) -> None:
        self._token = token
        self._tasks = tasks
        self._lock = threading.Lock()
        self._results: list[_Result] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_trio: _ToTrio

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve calls from ``loop``, the calling thread's running loop."""
        self._loop = loop
        self._to_trio = _ToTrio(loop, self._token)

    # The asyncio side ---------------------------------------------------------------------------

    async def call(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *args: Any,
        shield: bool = False,
        discard: Callable[[T], Coroutine[Any, Any, Any]] | None = None,
    ) -> T:
        """``await fn(*args)`` on the host's loop; its result or exception comes back here.

        ``discard(result)`` runs on the host's loop when the result arrives after the caller
        stopped waiting (for a result that holds resources: a subscription).
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        job = _Job(future, fn, args, discard)
        self._to_trio.put(functools.partial(self._start, job))
        if shield:
            # The host finishes the call whatever happens here; the caller just stops waiting.
            return await asyncio.shield(future)
        try:
            return await future
        except asyncio.CancelledError:
            self._to_trio.put(job.cancel)
            raise

    def pull(self, fn: Callable[[Any], Coroutine[Any, Any, T]], arg: Any) -> Pull[T]:
        """A :class:`Pull` of ``fn(arg)``."""
        return Pull(self, fn, arg)

    def spawn(self, fn: Call, *args: Any) -> None:
        """Start ``fn(*args)`` on the host's loop and do not wait for it (a clean-up)."""
        self._to_trio.put(functools.partial(self._start, _Job(None, fn, args)))

    def _settle_all(self) -> None:
        with self._lock:
            results, self._results = self._results, []
        for future, value, error, discard in results:
            if future.done():  # its caller was cancelled and no longer waits
                if discard is not None and error is None:
                    self.spawn(discard, value)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    # The trio side ------------------------------------------------------------------------------

    def _start(self, job: _Job) -> None:
        self._tasks.start_soon(self._run, job)

    async def _run(self, job: _Job) -> None:
        with _bound(job.correlation_id), anyio.CancelScope() as scope:
            job.scope = scope
            if job.cancelled:
                scope.cancel()
            try:
                value = await job.fn(*job.args)
            except Exception as exc:
                if job.future is not None:
                    self._settle(job.future, None, exc)
                return
            if job.future is not None:
                self._settle(job.future, value, None, job.discard)
            elif job.discard is not None:
                await job.discard(value)
            return
        # Cancelled: by the caller (who no longer waits) or by the host shutting down.
        if job.future is not None:
            self._settle(job.future, None, _shutting_down())

    def _settle(
        self,
        future: asyncio.Future[Any],
        value: Any,
        error: BaseException | None,
        discard: Call | None = None,
    ) -> None:
        with self._lock:
            self._results.append((future, value, error, discard))
            first = len(self._results) == 1
        if first and self._loop is not None:
            # A closed asyncio loop raises RuntimeError: nobody waits for this any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._settle_all)
