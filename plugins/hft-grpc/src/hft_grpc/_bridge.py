"""Calls from the gRPC server's asyncio thread into the host's trio loop, without blocking either.

grpcio's server speaks asyncio; the host runs trio, and nothing of the host (OMS, hub, auth) is
thread-safe. So every call into the host runs as a task on the host's loop: the asyncio side
hands it over with ``TrioToken.run_sync_soon`` (thread-safe, returns at once) and awaits an
asyncio future, which the trio task settles with ``loop.call_soon_threadsafe``. Neither loop
ever waits on the other. (anyio's ``BlockingPortal`` would block the asyncio thread for a turn
of the trio loop on every call.)

Cancelling the awaiting asyncio task (a client gone, a deadline passed) cancels the trio task,
unless the call was made with ``shield=True``: a trading call, once begun, runs to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import anyio.abc
import trio

from hft import NetworkError

__all__ = ["Bridge"]

T = TypeVar("T")


class _Job:
    """One call: its asyncio future, and the trio cancel scope it runs in once started."""

    __slots__ = ("cancelled", "future", "loop", "scope")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.future = future
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False

    def cancel(self) -> None:  # on the trio thread
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    def settle(self, value: Any, error: BaseException | None) -> None:  # on the trio thread
        # A closed asyncio loop raises RuntimeError: nobody waits for this any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class Bridge:
    """Runs coroutine functions on the host's trio loop for code on another thread's asyncio loop.

    Made on the trio side with the task group the calls run in; used from the asyncio side.
    """

    def __init__(self, token: trio.lowlevel.TrioToken, tasks: anyio.abc.TaskGroup) -> None:
        self._token = token
        self._tasks = tasks

    async def call(
        self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, shield: bool = False
    ) -> T:
        """``await fn(*args)`` on the host's loop; its result or exception comes back here."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future())
        self._token.run_sync_soon(self._start, job, fn, args)
        if shield:
            # The host finishes the call whatever happens here; the caller just stops waiting.
            result: T = await asyncio.shield(job.future)
            return result
        try:
            return await job.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    def cancel(self, job: _Job) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(job.cancel)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``fn(*args)`` on the host's loop and do not wait for it (a clean-up)."""
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._start_detached, fn, args)

    def _start_detached(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]
    ) -> None:
        self._tasks.start_soon(fn, *args)

    def _start(
        self, job: _Job, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]
    ) -> None:
        self._tasks.start_soon(self._run, job, fn, args)

    @staticmethod
    async def _run(
        job: _Job, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]
    ) -> None:
        with anyio.CancelScope() as scope:
            job.scope = scope
            if job.cancelled:
                scope.cancel()
            try:
                value = await fn(*args)
            except Exception as exc:
                job.settle(None, exc)
                return
            job.settle(value, None)
            return
        # Cancelled: by the caller (who no longer waits) or by the host shutting down.
        job.settle(None, NetworkError("the host is shutting down", code="shutting_down"))
