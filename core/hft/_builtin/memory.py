"""The ``memory://`` storage backend: the whole Storage contract, kept in the process.

Nothing survives the process, so it suits tests and throwaway sessions; durable deployments use a
SQL backend. Objects are copied in and out (through the model's converter) so callers can never
mutate what is stored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypeVar

import attrs

import hft
from hft.contracts import OrderEvent, Storage
from hft.hookspecs import RegisterStorage
from hft.model import Account, Fill, Instrument, Order, Position, User, converter, utcnow

T = TypeVar("T")


def _copy(value: T) -> T:
    return converter.structure(converter.unstructure(value), type(value))


class MemoryStorage(Storage):
    def __init__(self, url: str) -> None:
        self.url = url
        self._journal: list[OrderEvent] = []
        self._orders: dict[str, Order] = {}
        self._fills: dict[tuple[str, str], Fill] = {}
        self._positions: dict[tuple[str, str, str], Position] = {}
        self._instruments: dict[str, Instrument] = {}
        self._accounts: dict[str, Account] = {}
        self._users: dict[str, tuple[User, str | None]] = {}
        self._state: dict[tuple[str, str], bytes] = {}
        self._audit: list[tuple[str, dict[str, object]]] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def append_order_events(
        self,
        events: Sequence[tuple[Order, str]],
        fills: Sequence[Fill] = (),
        positions: Sequence[Position] = (),
    ) -> list[int]:
        await self.save_fills(fills)
        await self.save_positions(positions)
        seqs = []
        for order, kind in events:
            snapshot = order.snapshot()
            event = OrderEvent(seq=len(self._journal) + 1, order=snapshot, kind=kind, at=utcnow())
            self._journal.append(event)
            self._orders[order.order_id] = snapshot
            seqs.append(event.seq)
        return seqs

    async def order_events(self, after_seq: int = 0, limit: int = 1000) -> list[OrderEvent]:
        return [
            attrs.evolve(e, order=e.order.snapshot()) for e in self._journal[after_seq:][:limit]
        ]

    async def last_order_event_seq(self) -> int:
        return len(self._journal)

    async def load_orders(self, *, open_only: bool = False) -> list[Order]:
        return [o.snapshot() for o in self._orders.values() if not (open_only and o.is_terminal)]

    async def save_fills(self, fills: Sequence[Fill]) -> None:
        for fill in fills:
            self._fills.setdefault((fill.broker_order_id, fill.fill_id), fill)

    async def load_fills(self, account: str | None = None) -> list[Fill]:
        return [f for f in self._fills.values() if account in (None, f.account)]

    async def save_positions(self, positions: Sequence[Position]) -> None:
        for p in positions:
            self._positions[(p.account, p.instrument, p.product)] = _copy(p)

    async def load_positions(self, account: str | None = None) -> list[Position]:
        return [_copy(p) for p in self._positions.values() if account in (None, p.account)]

    async def save_instruments(self, instruments: Sequence[Instrument]) -> None:
        self._instruments.update((i.key, i) for i in instruments)

    async def load_instruments(self) -> list[Instrument]:
        return list(self._instruments.values())

    async def save_account(self, account: Account) -> None:
        self._accounts[account.account_id] = account

    async def load_accounts(self) -> list[Account]:
        return list(self._accounts.values())

    async def save_user(self, user: User, password_hash: str | None = None) -> None:
        previous = self._users.get(user.username)
        kept = password_hash if password_hash is not None else (previous[1] if previous else None)
        self._users[user.username] = (user, kept)

    async def load_users(self) -> list[User]:
        return [user for user, _ in self._users.values()]

    async def password_hash(self, username: str) -> str | None:
        entry = self._users.get(username)
        return entry[1] if entry else None

    async def append_audit(self, kind: str, payload: dict[str, object]) -> None:
        entry = json.loads(json.dumps({**payload, "at": utcnow().isoformat()}))
        self._audit.append((kind, entry))

    async def audit_entries(self, kind: str, limit: int = 100) -> list[dict[str, object]]:
        return [entry for k, entry in reversed(self._audit) if k == kind][:limit]

    async def put_state(self, namespace: str, key: str, value: bytes) -> None:
        self._state[(namespace, key)] = bytes(value)

    async def get_state(self, namespace: str, key: str) -> bytes | None:
        return self._state.get((namespace, key))


@hft.hookimpl
def hft_register_storage(register: RegisterStorage) -> None:
    register("memory", MemoryStorage)
