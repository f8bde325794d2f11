"""The host's garbage collection: young collections only, older ones when orders are still."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator

import anyio
import pytest
import structlog

from hft import _host
from hft.model import Environment, OrderRequest, Role, Side, User
from hft.testing import Services, make_host
from hft.testing import _plugin as test_broker_plugin

TRADER = User("tara", Role.TRADER, Environment.LIVE, accounts=("acct",))


class _Cycle:
    """An object that refers to itself: only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


def promoted_cycle() -> weakref.ref[_Cycle]:
    """Cyclic garbage that a young collection has already seen alive, as a connection's tasks
    are by the time it closes."""
    cycle = _Cycle()
    gc.collect(0)  # survives: moved out of the young generation
    ref = weakref.ref(cycle)
    del cycle
    return ref


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    config = {
        "brokers": {"t": {"plugin": "test"}},
        "accounts": {"acct": {"broker": "t", "environment": "live"}},
    }
    async with make_host({"test": test_broker_plugin}, config).running() as running:
        with anyio.fail_after(5):
            while not running.brokers["t"].ready:  # noqa: ASYNC110 - the host's state
                await anyio.sleep(0.001)
        yield running


@pytest.mark.anyio
async def test_a_running_host_collects_young_objects_only(services: Services) -> None:
    young, middle, old = gc.get_threshold()
    assert young == _host.GC_YOUNG_THRESHOLD
    assert middle >= 1 << 30  # never reached: no automatic older collection
    assert old >= 1 << 30
    ref = promoted_cycle()
    before = gc.get_stats()[0]["collections"]
    kept = [[] for _ in range(10 * young)]  # net allocations: ten young collections' worth
    assert gc.get_stats()[0]["collections"] >= before + 9
    assert ref() is not None  # no older collection ran
    del kept


@pytest.mark.anyio
async def test_an_older_collection_waits_until_orders_are_still(services: Services) -> None:
    ref = promoted_cycle()
    request = OrderRequest("acct", "NSE:INFY", Side.BUY, 1, price=150_000)
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_host._collect_when_quiet, services.oms, 0.3, 0)
            with anyio.move_on_after(1.0):  # orders keep moving for three quiet periods
                while True:
                    await services.oms.submit(TRADER, request)
                    await anyio.sleep(0.05)
            assert ref() is not None
            assert not [e for e in logs if e["event"] == "host.gc_quiet"]
            with anyio.fail_after(3):
                while ref() is not None:  # noqa: ASYNC110 - freed by the collector task
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    (collection,) = [e for e in logs if e["event"] == "host.gc_quiet"]
    assert collection["collected"] >= 2  # the object and its __dict__
    assert collection["pause_ms"] >= 0
