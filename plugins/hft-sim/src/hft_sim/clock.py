"""Simulated time: one clock, and everything that falls due on it, in order.

The clock holds two kinds of work: *market steps*, every ``step_ns`` (agents move, ticks go
out), and *actions* scheduled at an instant (an order reaching the exchange, a report reaching
the broker). :meth:`Scheduler.run_until` does all work due up to an instant, earliest first;
actions due at the same instant as a step run before it, and actions at the same instant run
in the order they were scheduled. Nothing here reads a real clock: the broker decides how far
to run (to the wall clock's time, or as far as a test says).
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable
from typing import Final

__all__ = ["EPOCH", "Scheduler", "from_ns", "to_ns"]

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_ns(at: dt.datetime) -> int:
    """Nanoseconds since the epoch of an aware date-time."""
    return (at - EPOCH) // dt.timedelta(microseconds=1) * 1000


def from_ns(ns: int) -> dt.datetime:
    """The UTC date-time of ``ns`` nanoseconds since the epoch (to the microsecond)."""
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


class Scheduler:
    """Simulated time in nanoseconds since the epoch, market steps and scheduled actions."""

    def __init__(self, start_ns: int, step_ns: int) -> None:
        if step_ns <= 0:
            raise ValueError("the step must be positive")
        self.now_ns = start_ns
        self.step_ns: Final = step_ns
        self.next_step_ns = start_ns + step_ns
        self._actions: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, when_ns: int, action: Callable[[], None]) -> None:
        """Run ``action`` at ``when_ns`` (at once, on the next run, if that has passed)."""
        self._seq += 1
        heapq.heappush(self._actions, (max(when_ns, self.now_ns), self._seq, action))

    @property
    def next_due_ns(self) -> int:
        """When the next work falls due."""
        actions = self._actions
        return min(actions[0][0], self.next_step_ns) if actions else self.next_step_ns

    def run_until(self, until_ns: int, step: Callable[[], None]) -> int:
        """Do all work due at or before ``until_ns``, then stand at ``until_ns`` (if later).

        Returns the number of market steps run.
        """
        actions = self._actions
        steps = 0
        while True:
            next_step = self.next_step_ns
            if actions and actions[0][0] <= next_step and actions[0][0] <= until_ns:
                when, _, action = heapq.heappop(actions)
                self.now_ns = when
                action()
            elif next_step <= until_ns:
                self.now_ns = next_step
                self.next_step_ns = next_step + self.step_ns
                step()
                steps += 1
            else:
                break
        if until_ns > self.now_ns:
            self.now_ns = until_ns
        return steps

    def skip_steps(self, until_ns: int) -> int:
        """Drop the market steps due before ``until_ns`` (the real clock fell too far behind);
        return how many. Scheduled actions are kept."""
        if self.next_step_ns > until_ns:
            return 0
        skipped = (until_ns - self.next_step_ns) // self.step_ns
        self.next_step_ns += skipped * self.step_ns
        return skipped
