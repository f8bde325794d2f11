"""Sign-in, credentials in call metadata, and every refusal as its documented status and code."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest
from hft_grpc._errors import grpc_status
from hft_grpc._generated import auth_pb2, market_data_pb2, orders_pb2, portfolio_pb2
from hft_grpc._generated import common_pb2 as pb
from hft_grpc._server import credential_from_metadata

from hft import (
    AuthError,
    BrokerRejected,
    Conflict,
    HftError,
    IllegalTransition,
    NetworkError,
    NotFound,
    RateLimited,
    RiskRejected,
    ValidationError,
)

pytestmark = pytest.mark.anyio
S = grpc.StatusCode


def code_of(error: grpc.RpcError) -> str:
    return dict(error.trailing_metadata())["hft-error-code"]


async def test_login_refresh_and_reuse(harness: Any) -> None:
    tokens = await harness.login("alice")
    assert tokens.token_type == "bearer"
    assert tokens.expires_in_s > 0
    me = (("authorization", f"Bearer {tokens.access_token}"),)
    accounts = await harness.call(
        harness.stubs.portfolio.Accounts, portfolio_pb2.AccountsRequest(), metadata=me
    )
    assert [a.account_id for a in accounts.accounts] == ["live_a", "sim_a"]

    renewed = await harness.call(
        harness.stubs.auth.Refresh, auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token)
    )
    assert renewed.tokens.access_token != tokens.access_token
    # The refresh token is single-use: presenting it again ends the session.
    error = await harness.fails(
        harness.stubs.auth.Refresh, auth_pb2.RefreshRequest(refresh_token=tokens.refresh_token)
    )
    assert error.code() == S.UNAUTHENTICATED
    assert code_of(error) == "token_revoked"


@pytest.mark.parametrize(
    ("metadata", "status", "code"),
    [
        ((), S.UNAUTHENTICATED, "missing_credentials"),
        ((("authorization", "Bearer "),), S.UNAUTHENTICATED, "missing_credentials"),
        ((("authorization", "Bearer not.a.jwt"),), S.UNAUTHENTICATED, "invalid_token"),
        ((("authorization", "Basic dXNlcjpwdw=="),), S.UNAUTHENTICATED, "invalid_token"),
        ((("x-api-key", "hft_0123_nope"),), S.UNAUTHENTICATED, "invalid_api_key"),
        ((("authorization", "ApiKey hft_0123_nope"),), S.UNAUTHENTICATED, "invalid_api_key"),
    ],
)
async def test_bad_credentials(harness: Any, metadata: Any, status: S, code: str) -> None:
    for method, request in [
        (harness.stubs.orders.List, orders_pb2.ListRequest()),
        (harness.stubs.portfolio.Positions, portfolio_pb2.PositionsRequest()),
        (harness.stubs.market.Quotes, market_data_pb2.QuotesRequest(instruments=["NSE:INFY"])),
    ]:
        error = await harness.fails(method, request, metadata=metadata)
        assert error.code() == status
        assert code_of(error) == code


async def test_wrong_password_and_disabled_user(harness: Any) -> None:
    for username in ("alice", "nobody"):
        error = await harness.fails(
            harness.stubs.auth.Login, auth_pb2.LoginRequest(username=username, password="wrong!!")
        )
        assert error.code() == S.UNAUTHENTICATED
        assert code_of(error) == "invalid_credentials"
    for bad in (
        auth_pb2.LoginRequest(username="alice"),
        auth_pb2.LoginRequest(username="alice", password="x" * 257),
        auth_pb2.LoginRequest(username="al ice", password="whatever"),
        auth_pb2.LoginRequest(username="", password="whatever"),
    ):
        error = await harness.fails(harness.stubs.auth.Login, bad)
        assert (error.code(), code_of(error)) == (S.INVALID_ARGUMENT, "invalid")
    error = await harness.fails(harness.stubs.auth.Refresh, auth_pb2.RefreshRequest())
    assert error.code() == S.INVALID_ARGUMENT
    error = await harness.fails(
        harness.stubs.auth.Refresh, auth_pb2.RefreshRequest(refresh_token="not.a.jwt")
    )
    assert (error.code(), code_of(error)) == (S.UNAUTHENTICATED, "invalid_token")
    me = await harness.as_user("viewer")
    await harness.services.auth.set_disabled("viewer", True)
    error = await harness.fails(harness.stubs.orders.List, orders_pb2.ListRequest(), metadata=me)
    assert (error.code(), code_of(error)) == (S.PERMISSION_DENIED, "user_disabled")
    login = auth_pb2.LoginRequest(username="viewer", password="correct horse battery")
    error = await harness.fails(harness.stubs.auth.Login, login)
    assert (error.code(), code_of(error)) == (S.PERMISSION_DENIED, "user_disabled")


async def test_api_keys_in_either_header(harness: Any) -> None:
    _, key = await harness.services.auth.create_api_key("alice", "bot")
    for metadata in ((("x-api-key", key),), (("authorization", f"ApiKey {key}"),)):
        order = await harness.call(
            harness.stubs.orders.Place,
            orders_pb2.PlaceRequest(
                account="live_a", instrument="NSE:INFY", side=1, quantity=1, price="1000.00"
            ),
            metadata=metadata,
        )
        assert order.orders[0].user == "alice"


async def test_sign_in_is_rate_limited_per_address(harness_factory: Any) -> None:
    async with harness_factory(login_rate_per_s=0.01, login_burst=2) as harness:
        request = auth_pb2.LoginRequest(username="alice", password="wrong!!")
        for _ in range(2):
            assert code_of(await harness.fails(harness.stubs.auth.Login, request)) == (
                "invalid_credentials"
            )
        error = await harness.fails(harness.stubs.auth.Login, request)
        assert error.code() == S.RESOURCE_EXHAUSTED
        trailers = dict(error.trailing_metadata())
        assert trailers["hft-error-code"] == "rate_limited"
        assert int(trailers["hft-retry-after-s"]) >= 1


def _place(**fields: Any) -> orders_pb2.PlaceRequest:
    base: dict[str, Any] = {
        "account": "live_a",
        "instrument": "NSE:INFY",
        "side": 1,
        "quantity": 1,
        "price": "1000.00",
    }
    return orders_pb2.PlaceRequest(**{**base, **fields})


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (_place(side=0), S.INVALID_ARGUMENT, "invalid"),
        (_place(side=7), S.INVALID_ARGUMENT, "invalid"),
        (_place(quantity=0), S.INVALID_ARGUMENT, "invalid"),
        (_place(quantity=-5), S.INVALID_ARGUMENT, "invalid"),
        (_place(price="abc"), S.INVALID_ARGUMENT, "invalid"),
        (_place(price="-1000"), S.INVALID_ARGUMENT, "invalid"),
        (_place(price="1000.001"), S.INVALID_ARGUMENT, "invalid"),
        (_place(price="1000.03"), S.INVALID_ARGUMENT, "off_tick"),
        (_place(order_type=2, price=None), S.INVALID_ARGUMENT, "missing_price"),
        (_place(order_type=1), S.INVALID_ARGUMENT, "unexpected_price"),
        (_place(order_type=3, trigger_price=None), S.INVALID_ARGUMENT, "unexpected_price"),
        (_place(disclosed_quantity=5), S.INVALID_ARGUMENT, "bad_quantity"),
        (_place(client_order_id="has space"), S.INVALID_ARGUMENT, "invalid"),
        (_place(tag="x" * 65), S.INVALID_ARGUMENT, "invalid"),
        (_place(instrument="INFY"), S.INVALID_ARGUMENT, "invalid"),
        (_place(account=""), S.INVALID_ARGUMENT, "invalid"),
        (_place(instrument="NSE:NOPE"), S.NOT_FOUND, "not_found"),
        (_place(account="nope"), S.NOT_FOUND, "not_found"),
        (_place(account="live_b"), S.PERMISSION_DENIED, "forbidden"),
    ],
)
async def test_bad_orders(harness: Any, request_: Any, status: S, code: str) -> None:
    me = await harness.as_user("alice")
    error = await harness.fails(harness.stubs.orders.Place, request_, metadata=me)
    assert (error.code(), code_of(error)) == (status, code), error.details()
    assert harness.services.oms.orders(await _user(harness, "root")) == []


async def _user(harness: Any, name: str) -> Any:
    return harness.services.auth.user(name)


async def test_who_may_trade(harness: Any) -> None:
    viewer = await harness.as_user("viewer")
    error = await harness.fails(harness.stubs.orders.Place, _place(), metadata=viewer)
    assert (error.code(), code_of(error)) == (S.PERMISSION_DENIED, "forbidden")
    simmer = await harness.as_user("simmer")  # a sim user is never granted a live account
    error = await harness.fails(harness.stubs.orders.Place, _place(), metadata=simmer)
    assert (error.code(), code_of(error)) == (S.PERMISSION_DENIED, "forbidden")
    placed = await harness.call(
        harness.stubs.orders.Place, _place(account="sim_a"), metadata=simmer
    )
    assert placed.orders[0].account == "sim_a"


async def test_order_refusals(harness: Any) -> None:
    me, other = await harness.as_user("alice"), await harness.as_user("other")
    order = await harness.place(client_order_id="once")
    await harness.settle()
    stubs = harness.stubs.orders
    # Another user's order does not exist for them, whatever they try.
    for method, request in [
        (stubs.Get, orders_pb2.GetRequest(order_id=order.order_id)),
        (stubs.Cancel, orders_pb2.CancelRequest(order_id=order.order_id)),
        (stubs.Modify, orders_pb2.ModifyRequest(order_id=order.order_id, quantity=3)),
    ]:
        error = await harness.fails(method, request, metadata=other)
        assert (error.code(), code_of(error)) == (S.NOT_FOUND, "not_found")
    error = await harness.fails(stubs.Get, orders_pb2.GetRequest(order_id=""), metadata=me)
    assert error.code() == S.INVALID_ARGUMENT
    error = await harness.fails(
        stubs.Place, _place(client_order_id="once", quantity=2), metadata=me
    )
    assert (error.code(), code_of(error)) == (S.ALREADY_EXISTS, "duplicate_client_order_id")
    error = await harness.fails(
        stubs.Modify, orders_pb2.ModifyRequest(order_id=order.order_id, price="1.001"), metadata=me
    )
    assert error.code() == S.INVALID_ARGUMENT
    await harness.call(stubs.Cancel, orders_pb2.CancelRequest(order_id=order.order_id), metadata=me)
    await harness.settle()
    error = await harness.fails(
        stubs.Cancel, orders_pb2.CancelRequest(order_id=order.order_id), metadata=me
    )
    assert (error.code(), code_of(error)) == (S.FAILED_PRECONDITION, "order_not_live")
    error = await harness.fails(stubs.List, orders_pb2.ListRequest(account="live_b"), metadata=me)
    assert (error.code(), code_of(error)) == (S.PERMISSION_DENIED, "forbidden")
    error = await harness.fails(stubs.List, orders_pb2.ListRequest(limit=5000), metadata=me)
    assert error.code() == S.INVALID_ARGUMENT
    error = await harness.fails(stubs.List, orders_pb2.ListRequest(status=99), metadata=me)
    assert error.code() == S.INVALID_ARGUMENT


async def test_broker_rejection_is_an_order_not_an_error(harness: Any) -> None:
    harness.venue.reject_next("RMS: margin exceeds available funds")
    order = await harness.place()
    await harness.settle()
    got = await harness.call(
        harness.stubs.orders.Get,
        orders_pb2.GetRequest(order_id=order.order_id),
        metadata=await harness.as_user("alice"),
    )
    assert got.order.status == pb.ORDER_STATUS_REJECTED
    assert "margin" in got.order.reason


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ValidationError("x"), S.INVALID_ARGUMENT),
        (IllegalTransition("x"), S.FAILED_PRECONDITION),
        (AuthError("x"), S.UNAUTHENTICATED),
        (AuthError("x", code="forbidden", status=403), S.PERMISSION_DENIED),
        (NotFound("x"), S.NOT_FOUND),
        (Conflict("x"), S.FAILED_PRECONDITION),
        (Conflict("x", code="duplicate_client_order_id"), S.ALREADY_EXISTS),
        (Conflict("x", code="overflow"), S.ABORTED),
        (ValidationError("x", code="seq_ahead"), S.OUT_OF_RANGE),
        (RiskRejected("x", code="max_notional"), S.FAILED_PRECONDITION),
        (BrokerRejected("x"), S.FAILED_PRECONDITION),
        (RateLimited("x"), S.RESOURCE_EXHAUSTED),
        (NetworkError("x"), S.UNAVAILABLE),
        (HftError("x", code="deadline_exceeded", status=504), S.DEADLINE_EXCEEDED),
        (HftError("x"), S.INTERNAL),
    ],
)
def test_status_table(error: HftError, status: S) -> None:
    """The table README.md documents."""
    assert grpc_status(error) == status


@pytest.mark.parametrize(
    ("metadata", "credential"),
    [
        ([], None),
        ([("authorization", "Bearer abc")], "Bearer abc"),
        ([("authorization", "bearer  abc ")], "Bearer abc"),
        ([("authorization", "ApiKey hft_1_2")], "hft_1_2"),
        ([("x-api-key", "hft_1_2")], "hft_1_2"),
        ([("x-api-key", "k"), ("authorization", "Bearer t")], "Bearer t"),
        ([("authorization", "Digest x")], "Digest x"),
        ([("x-api-key-bin", b"\x00")], None),
    ],
)
def test_credentials_from_metadata(metadata: Any, credential: str | None) -> None:
    assert credential_from_metadata(metadata) == credential


async def test_calls_are_rate_limited_per_user(harness_factory: Any) -> None:
    async with harness_factory(rate_limit_per_s=0.01, rate_limit_burst=3) as harness:
        me = await harness.as_user("alice")
        for _ in range(3):
            await harness.call(harness.stubs.orders.List, orders_pb2.ListRequest(), metadata=me)
        error = await harness.fails(
            harness.stubs.orders.List, orders_pb2.ListRequest(), metadata=me
        )
        assert (error.code(), code_of(error)) == (S.RESOURCE_EXHAUSTED, "rate_limited")
        # Another user has a budget of their own.
        other = await harness.as_user("other")
        await harness.call(harness.stubs.orders.List, orders_pb2.ListRequest(), metadata=other)


async def test_correlation_ids_and_the_access_log(harness: Any) -> None:
    import structlog.testing

    from hft._logging import _add_correlation_id

    me = await harness.as_user("alice")
    with structlog.testing.capture_logs(processors=[_add_correlation_id]) as logs:
        _, call = await harness.call(
            harness.stubs.auth.Login.with_call,
            auth_pb2.LoginRequest(username="alice", password="correct horse battery"),
            metadata=(("x-correlation-id", "trace-42"),),
        )
        error = await harness.fails(
            harness.stubs.orders.Get, orders_pb2.GetRequest(order_id="nope"), metadata=me
        )
        # ``context.abort`` sends the status before the handler unwinds and logs the call;
        # the line is written on the gRPC server's thread, so poll for it.
        with anyio.fail_after(5):
            while sum(e["event"] == "grpc.call" for e in logs) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.001)
    assert ("x-correlation-id", "trace-42") in call.initial_metadata()
    assert ("x-correlation-id", "trace-42") not in error.initial_metadata()
    # The host's own log line of the call carries the client's id: it crossed to the trio loop.
    signed_in = [e for e in logs if e["event"] == "auth.login"]
    assert [e.get("correlation_id") for e in signed_in] == ["trace-42"]
    calls = [e for e in logs if e["event"] == "grpc.call"]
    assert [(e["method"], e["status"], e["code"]) for e in calls] == [
        ("Auth/Login", "OK", None),
        ("Order/Get", "NOT_FOUND", "not_found"),
    ]
    assert calls[0]["correlation_id"] == "trace-42"
    assert calls[1]["correlation_id"] != "trace-42"
