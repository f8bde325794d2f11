"""The operations behind every RPC, run on the host's trio loop: protobuf in, protobuf out.

Everything here touches the host's services, which are not thread-safe, so the server thread
only ever reaches it through :class:`hft_grpc._bridge.Bridge`. Authorisation is the host's own:
trading goes through the OMS (which enforces grants, roles and sim/live), reads apply
``User.can_see`` to each account, exactly as the HTTP transport does.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import anyio
import anyio.lowlevel
import attrs

from hft import AuthError, HftError, NetworkError, NotFound, RateLimited, ValidationError
from hft._auth import TokenPair
from hft._host import Services
from hft._hub import Subscription, project
from hft._oms import OrderFeed
from hft._resilience import TokenBucket
from hft.model import Account, ConnectionEvent, Instrument, StreamMode, Tick, User
from hft_grpc import _convert as c
from hft_grpc._generated import auth_pb2 as auth_pb
from hft_grpc._generated import market_data_pb2 as md_pb
from hft_grpc._generated import orders_pb2 as orders_pb
from hft_grpc._generated import portfolio_pb2 as portfolio_pb
from hft_grpc.config import GrpcConfig

__all__ = ["DEADLINE_EXCEEDED", "HostApi", "TickStream"]

#: Deadlines arrive as ``time.monotonic()`` instants: the one clock both threads share.
Deadline = float | None

DEADLINE_EXCEEDED: Final = "deadline_exceeded"
_MAX_QUOTES: Final = 50
_MAX_PAGE: Final = 1000
_DEFAULT_PAGE: Final = 100
_MAX_BUCKETS: Final = 10_000
_MAX_PASSWORD: Final = 256
_MAX_TOKEN: Final = 4096


def deadline_error() -> HftError:
    return HftError("the call's deadline passed", code=DEADLINE_EXCEEDED, status=504)


def _remaining(deadline: Deadline) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise deadline_error()
    return left


@contextmanager
def _within(deadline: Deadline) -> Iterator[None]:
    """Bound a read by the caller's deadline."""
    try:
        with anyio.fail_after(_remaining(deadline)):
            yield
    except TimeoutError:
        raise deadline_error() from None


@attrs.define(eq=False)
class TickStream:
    """One ``StreamTicks`` call's subscription, as the server thread holds it (opaquely)."""

    subscription: Subscription
    mode: StreamMode
    scales: dict[str, int]
    greeting: list[ConnectionEvent]


class HostApi:
    """The host's services as the gRPC services need them."""

    def __init__(self, services: Services, config: GrpcConfig) -> None:
        self.services = services
        self.config = config
        self.closing = False
        #: Instruments as last stored, for the scale of orders whose broker has not connected.
        #: Open streams, each with its user; and how many each user has open.
        self._streams: dict[Subscription | OrderFeed, str] = {}
        self._open_per_user: collections.Counter[str] = collections.Counter()
        self._login_buckets: dict[str, TokenBucket] = {}
        self._user_buckets: dict[str, TokenBucket] = {}
        #: (instrument, mode) -> the latest tick encoded as a MarketEvent; bounded by the
        #: instruments streamed times three modes.
        self._encoded_ticks: dict[tuple[str, StreamMode], tuple[Tick, bytes]] = {}

    def close_streams(self) -> None:
        """Shutdown: refuse new streams and end every open one."""
        self.closing = True
        for stream in list(self._streams):
            stream.close()

    # Who is calling ---------------------------------------------------------------------------

    def user(self, credential: str | None) -> User:
        if credential is None:
            raise AuthError(
                "send an access token (authorization: Bearer ...) or an API key (x-api-key)",
                code="missing_credentials",
            )
        user = self.services.auth.authenticate(credential)
        config = self.config
        _throttle(
            self._user_buckets,
            user.username,
            config.rate_limit_per_s,
            config.rate_limit_burst,
            "too many calls; slow down",
        )
        return user

    def _throttle_sign_in(self, peer: str) -> None:
        config = self.config
        _throttle(
            self._login_buckets,
            peer,
            config.login_rate_per_s,
            config.login_burst,
            "too many sign-in attempts from this address; wait and retry",
        )

    # Scales and visibility --------------------------------------------------------------------

    def scale(self, key: str, broker: str | None = None) -> int:
        """The price scale of ``key`` (at ``broker`` when given), 2 when nothing knows it."""
        return self.services.price_scale(key, broker)

    def _account_scale(self, account_id: str, key: str) -> int:
        account = self.services.accounts.get(account_id)
        return self.scale(key, account.broker if account is not None else None)

    def _visible_account(self, user: User, account_id: str) -> Account:
        account = self.services.accounts.get(account_id)
        if account is None:
            raise NotFound(f"no account {account_id!r}")
        if not user.can_see(account):
            raise AuthError(
                f"user {user.username!r} may not see account {account_id!r}",
                code="forbidden",
                status=403,
            )
        return account

    def _accounts(self, user: User, account_id: str | None) -> list[Account]:
        if account_id is not None:
            return [self._visible_account(user, account_id)]
        return [a for a in self.services.accounts.values() if user.can_see(a)]

    def _find_instrument(self, key: str) -> tuple[str, Instrument]:
        for name, handle in self.services.brokers.items():
            instrument = handle.instruments.get(key)
            if instrument is not None:
                return name, instrument
        raise NotFound(f"unknown instrument {key!r}")

    # AuthService ------------------------------------------------------------------------------

    async def login(
        self, peer: str, request: auth_pb.LoginRequest, deadline: Deadline
    ) -> auth_pb.LoginResponse:
        self._throttle_sign_in(peer)
        c.check_name(request.username, "username")
        if not 1 <= len(request.password) <= _MAX_PASSWORD:
            raise ValidationError(f"password must be 1-{_MAX_PASSWORD} characters", code="invalid")
        with _within(deadline):
            pair = await self.services.auth.login(request.username, request.password)
        return auth_pb.LoginResponse(tokens=_tokens(pair))

    async def refresh(
        self, peer: str, request: auth_pb.RefreshRequest, deadline: Deadline
    ) -> auth_pb.RefreshResponse:
        self._throttle_sign_in(peer)
        if not 1 <= len(request.refresh_token) <= _MAX_TOKEN:
            raise ValidationError(
                f"refresh_token must be 1-{_MAX_TOKEN} characters", code="invalid"
            )
        with _within(deadline):
            pair = await self.services.auth.refresh(request.refresh_token)
        return auth_pb.RefreshResponse(tokens=_tokens(pair))

    # OrderService -----------------------------------------------------------------------------
    # Trading calls check the deadline once, before anything changes; once begun they run to
    # their end (see the bridge), so an order is never left half-placed by an impatient client.

    async def place(
        self, credential: str | None, request: orders_pb.PlaceRequest, deadline: Deadline
    ) -> orders_pb.PlaceResponse:
        user = self.user(credential)
        account = self.services.accounts.get(request.account)
        instrument = (
            self.services.instrument(account.broker, request.instrument)
            if account is not None
            else None
        )
        scale = instrument.price_scale if instrument is not None else 2
        order_request = c.order_request(request, scale)
        _remaining(deadline)
        orders = await self.services.oms.submit(user, order_request)
        return orders_pb.PlaceResponse(orders=[c.order_out(o, scale) for o in orders])

    async def modify(
        self, credential: str | None, request: orders_pb.ModifyRequest, deadline: Deadline
    ) -> orders_pb.ModifyResponse:
        user = self.user(credential)
        oms = self.services.oms
        current = oms.get(user, _order_id(request.order_id))
        scale = self._account_scale(current.request.account, current.request.instrument)
        change = c.modify_request(request, scale)
        _remaining(deadline)
        order = await oms.modify(user, request.order_id, change)
        return orders_pb.ModifyResponse(order=c.order_out(order, scale))

    async def cancel(
        self, credential: str | None, request: orders_pb.CancelRequest, deadline: Deadline
    ) -> orders_pb.CancelResponse:
        user = self.user(credential)
        order_id = _order_id(request.order_id)
        _remaining(deadline)
        order = await self.services.oms.cancel(user, order_id)
        scale = self._account_scale(order.request.account, order.request.instrument)
        return orders_pb.CancelResponse(order=c.order_out(order, scale))

    async def get(
        self, credential: str | None, request: orders_pb.GetRequest, deadline: Deadline
    ) -> orders_pb.GetResponse:
        user = self.user(credential)
        order = self.services.oms.get(user, _order_id(request.order_id))
        scale = self._account_scale(order.request.account, order.request.instrument)
        return orders_pb.GetResponse(order=c.order_out(order, scale))

    async def list_orders(
        self, credential: str | None, request: orders_pb.ListRequest, deadline: Deadline
    ) -> orders_pb.ListResponse:
        user = self.user(credential)
        account = request.account if request.HasField("account") else None
        if account is not None:
            self._visible_account(user, account)
        instrument = request.instrument if request.HasField("instrument") else None
        side = None if request.side == 0 else c.side_in(request.side)
        limit = request.limit or _DEFAULT_PAGE
        if limit > _MAX_PAGE:
            raise ValidationError(f"limit must lie in 1..{_MAX_PAGE}", code="invalid")
        orders = self.services.oms.orders(
            user, account=account, status=c.order_status_in(request.status)
        )
        if instrument is not None or side is not None:
            orders = [
                o
                for o in orders
                if (instrument is None or o.request.instrument == instrument)
                and (side is None or o.request.side is side)
            ]
        orders.reverse()
        start = request.offset
        page = orders[start : start + limit]
        out = orders_pb.ListResponse(
            orders=[
                c.order_out(o, self._account_scale(o.request.account, o.request.instrument))
                for o in page
            ],
            total=len(orders),
        )
        if start + limit < len(orders):
            out.next_offset = start + limit
        return out

    async def open_events(
        self, credential: str | None, request: orders_pb.StreamEventsRequest, deadline: Deadline
    ) -> tuple[OrderFeed, int]:
        """The caller's order feed, resumed after ``after_seq`` (or from now), and that seq."""
        user = self.user(credential)
        self._check_open(user)
        oms = self.services.oms
        last = oms.last_seq  # restored from the journal at start: seqs survive a restart
        after = request.after_seq if request.HasField("after_seq") else last
        if after > last:
            # No client can have seen it: a seq of another host's journal. Resuming from it
            # would silently drop every event up to it.
            raise ValidationError(
                f"after_seq {after} is ahead of this host's journal (at {last}); "
                "list the orders afresh and stream without after_seq",
                code="seq_ahead",
            )
        # Shielded: resume() leaves its feed subscribed if cancelled mid-replay, so it runs to
        # its end, and the deadline is checked after it.
        with anyio.CancelScope(shield=True):
            feed = await oms.resume(user, after, max_backlog=self.config.order_backlog)
        self._register(feed, user)
        try:
            _remaining(deadline)
            await anyio.lowlevel.checkpoint()  # a cancellation that came meanwhile lands here
        except BaseException:
            self._close(feed)
            raise
        return feed, after

    async def next_events(self, feed: OrderFeed) -> list[orders_pb.StreamEventsResponse] | None:
        """The next events of ``feed`` (waiting for some); None once it has ended."""
        try:
            batch = await feed.receive_batch()
        except anyio.EndOfStream:
            self._forget(feed)
            if self.closing:
                raise _shutting_down() from None
            return None
        return [
            orders_pb.StreamEventsResponse(
                event=orders_pb.OrderEvent(
                    seq=m.seq,
                    kind=c.EVENT_KINDS.get(m.kind, orders_pb.ORDER_EVENT_KIND_UNSPECIFIED),
                    order=c.order_out(
                        m.order,
                        self._account_scale(m.order.request.account, m.order.request.instrument),
                    ),
                )
            )
            for m in batch
        ]

    async def close_events(self, opened: tuple[OrderFeed, int]) -> None:
        self._close(opened[0])

    async def close_ticks(self, stream: TickStream) -> None:
        self._close(stream.subscription)

    def _close(self, stream: Subscription | OrderFeed) -> None:
        stream.close()
        self._forget(stream)

    # MarketDataService ------------------------------------------------------------------------

    async def quotes(
        self, credential: str | None, request: md_pb.QuotesRequest, deadline: Deadline
    ) -> md_pb.QuotesResponse:
        self.user(credential)
        keys = list(dict.fromkeys(request.instruments))
        if not 1 <= len(keys) <= _MAX_QUOTES:
            raise ValidationError(f"ask for 1..{_MAX_QUOTES} instruments", code="invalid")
        found: dict[str, md_pb.Tick] = {}
        missing: dict[str, list[Instrument]] = {}
        for key in keys:
            name, instrument = self._find_instrument(c.check_instrument(key))
            tick = self.services.hub.latest(key)
            if tick is not None:
                found[key] = c.tick_out(tick, instrument.price_scale)
            else:
                missing.setdefault(name, []).append(instrument)
        for name, instruments in missing.items():
            handle = self.services.brokers[name]
            if not handle.ready:
                continue
            try:
                with _within(deadline):
                    snapshots: dict[str, Tick] = await handle.broker.quotes(instruments)
            except HftError as exc:
                if exc.code == DEADLINE_EXCEEDED:
                    raise
                continue  # no quotes from this broker now: those instruments have no data
            for instrument in instruments:
                tick = snapshots.get(instrument.key)
                if tick is not None:
                    found[instrument.key] = c.tick_out(tick, instrument.price_scale)
        return md_pb.QuotesResponse(quotes=[found[k] for k in keys if k in found])

    async def open_ticks(
        self, credential: str | None, request: md_pb.StreamTicksRequest, deadline: Deadline
    ) -> TickStream:
        user = self.user(credential)
        keys = list(dict.fromkeys(request.instruments))
        limit = self.config.max_stream_instruments
        if not 1 <= len(keys) <= limit:
            raise ValidationError(f"ask for 1..{limit} instruments", code="invalid")
        mode = c.stream_mode_in(request.mode)
        scales = {
            key: self._find_instrument(c.check_instrument(key))[1].price_scale for key in keys
        }
        self._check_open(user)
        hub = self.services.hub
        subscription = hub.subscribe(keys, mode, name=f"grpc:{user.username}")
        self._register(subscription, user)
        return TickStream(subscription, mode, scales, list(hub.connections.values()))

    async def next_ticks(self, stream: TickStream) -> bytes | None:
        """What piled up since the last call (waiting for something), as an encoded
        ``StreamTicksResponse``; None once ended."""
        events: list[bytes] = [_connection_event(e) for e in stream.greeting]
        stream.greeting = []
        subscription = stream.subscription
        batch = (
            subscription.receive_nowait(self.config.max_batch)
            if events
            else await subscription.receive_batch(self.config.max_batch)
        )
        if not batch and not events:
            self._forget(subscription)
            if self.closing:
                raise _shutting_down()
            if subscription.closed_reason == "lagged":
                raise HftError(
                    "the stream fell too far behind broker connection changes; subscribe again",
                    code="lagged",
                    status=409,
                )
            return None
        mode, scales, cache = stream.mode, stream.scales, self._encoded_ticks
        for item in batch:
            if isinstance(item, Tick):
                # Every client of an instrument and mode gets the same bytes: encode once.
                key = (item.instrument, mode)
                cached = cache.get(key)
                if cached is not None and cached[0] is item:
                    events.append(cached[1])
                    continue
                tick = project(item, mode)
                encoded = md_pb.MarketEvent(
                    tick=c.tick_out(tick, scales[tick.instrument])
                ).SerializeToString()
                cache[key] = (item, encoded)
                events.append(encoded)
            elif isinstance(item, ConnectionEvent):
                events.append(_connection_event(item))
            # A Bar is skipped: MarketEvent has no bar message yet, and an old client must not
            # meet an unknown oneof case (README, "Market data").
        return c.repeated_field(1, events)

    # PortfolioService -------------------------------------------------------------------------

    async def positions(
        self, credential: str | None, request: portfolio_pb.PositionsRequest, deadline: Deadline
    ) -> portfolio_pb.PositionsResponse:
        user = self.user(credential)
        account = request.account if request.HasField("account") else None
        out = []
        for acct in self._accounts(user, account):
            for position in self.services.portfolio.positions(acct.account_id):
                scale = self.scale(position.instrument, acct.broker)
                out.append(c.position_out(position, scale))
        return portfolio_pb.PositionsResponse(positions=out)

    async def holdings(
        self, credential: str | None, request: portfolio_pb.HoldingsRequest, deadline: Deadline
    ) -> portfolio_pb.HoldingsResponse:
        user = self.user(credential)
        account = request.account if request.HasField("account") else None
        out = []
        for acct in self._accounts(user, account):
            handle = self.services.brokers.get(acct.broker)
            if handle is None or not handle.ready:
                if account is None:
                    continue
                raise NetworkError(f"broker {acct.broker!r} is not connected")
            with _within(deadline):
                holdings = await handle.broker.holdings(acct.broker_account)
            for holding in holdings:
                # Brokers name their own account code: answer with the hft account's id.
                holding = attrs.evolve(holding, account=acct.account_id)
                scale = self.scale(holding.instrument, acct.broker)
                out.append(c.holding_out(holding, scale))
        return portfolio_pb.HoldingsResponse(holdings=out)

    async def accounts(
        self, credential: str | None, request: portfolio_pb.AccountsRequest, deadline: Deadline
    ) -> portfolio_pb.AccountsResponse:
        user = self.user(credential)
        accounts = sorted(self._accounts(user, None), key=lambda a: a.account_id)
        return portfolio_pb.AccountsResponse(accounts=[c.account_out(a) for a in accounts])

    def _check_open(self, user: User) -> None:
        """Refuse a new stream when shutting down, or when ``user`` has too many open."""
        if self.closing:
            raise _shutting_down()
        limit = self.config.max_streams_per_user
        if self._open_per_user[user.username] >= limit:
            raise HftError(
                f"user {user.username!r} has {limit} streams open already; close one",
                code="too_many_streams",
                status=429,
            )

    def _register(self, stream: Subscription | OrderFeed, user: User) -> None:
        self._streams[stream] = user.username
        self._open_per_user[user.username] += 1

    def _forget(self, stream: Subscription | OrderFeed) -> None:
        username = self._streams.pop(stream, None)
        if username is not None:
            self._open_per_user[username] -= 1
            if not self._open_per_user[username]:
                del self._open_per_user[username]


def _throttle(
    buckets: dict[str, TokenBucket], key: str, rate: float, burst: float, message: str
) -> None:
    bucket = buckets.get(key)
    if bucket is None:
        if len(buckets) >= _MAX_BUCKETS:
            buckets.clear()  # forget idle callers rather than grow without bound
        bucket = buckets[key] = TokenBucket(rate, burst)
    if not bucket.try_acquire():
        raise RateLimited(message, retry_after_s=1 / rate)


def _connection_event(event: ConnectionEvent) -> bytes:
    return md_pb.MarketEvent(connection=c.connection_out(event)).SerializeToString()


def _shutting_down() -> NetworkError:
    return NetworkError("the server is shutting down; reconnect", code="shutting_down")


def _order_id(value: str) -> str:
    if not value or len(value) > 64:
        raise ValidationError("order_id is required (at most 64 characters)", code="invalid")
    return value


def _tokens(pair: TokenPair) -> auth_pb.Tokens:
    return auth_pb.Tokens(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in_s=pair.expires_in_s,
    )
