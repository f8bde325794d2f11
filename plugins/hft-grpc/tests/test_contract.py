"""The proto contract: generated code current, no binary floats, every RPC served, and request
decoding that refuses bad input with INVALID_ARGUMENT and nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hft_grpc import _convert
from hft_grpc._generated import (
    auth_pb2,
    common_pb2,
    market_data_pb2,
    orders_pb2,
    portfolio_pb2,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hft import ValidationError

ROOT = Path(__file__).resolve().parents[1]
FILES = (auth_pb2, common_pb2, market_data_pb2, orders_pb2, portfolio_pb2)


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "generate_proto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"run tools/generate_proto.py: {result.stdout}{result.stderr}"


def _messages(descriptor: Any) -> Any:
    for message in descriptor.message_types_by_name.values():
        yield message
        yield from message.nested_types


def test_no_binary_floats_anywhere() -> None:
    for module in FILES:
        assert module.DESCRIPTOR.package == "hft.v1"
        for message in _messages(module.DESCRIPTOR):
            for field in message.fields:
                assert field.type not in (
                    FieldDescriptor.TYPE_FLOAT,
                    FieldDescriptor.TYPE_DOUBLE,
                ), f"{message.full_name}.{field.name} is a binary float"


def _methods() -> list[tuple[str, bool]]:
    return [
        (f"/{service.full_name}/{method.name}", method.server_streaming)
        for module in FILES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def test_the_services_are_the_documented_ones() -> None:
    assert sorted(m for m, _ in _methods()) == sorted(
        [
            "/hft.v1.AuthService/Login",
            "/hft.v1.AuthService/Refresh",
            "/hft.v1.OrderService/Place",
            "/hft.v1.OrderService/Modify",
            "/hft.v1.OrderService/Cancel",
            "/hft.v1.OrderService/Get",
            "/hft.v1.OrderService/List",
            "/hft.v1.OrderService/StreamEvents",
            "/hft.v1.MarketDataService/Quotes",
            "/hft.v1.MarketDataService/StreamTicks",
            "/hft.v1.PortfolioService/Positions",
            "/hft.v1.PortfolioService/Holdings",
            "/hft.v1.PortfolioService/Accounts",
        ]
    )


@pytest.mark.anyio
async def test_every_rpc_is_served_and_refuses_garbage(harness: Any) -> None:
    me = await harness.as_user("alice")
    for path, streaming in _methods():
        for payload in (b"", b"\xff\xff\xff"):
            if streaming:
                call = harness.channel.unary_stream(path)
                stream = harness.stream(call, payload, metadata=me)
                if payload:
                    _, error = await stream.until_error()
                else:
                    try:
                        await stream.next(wait_s=2)
                    except grpc.RpcError as caught:
                        error = caught
                    else:
                        stream.cancel()
                        continue
            else:
                try:
                    await harness.call(harness.channel.unary_unary(path), payload, metadata=me)
                    continue
                except grpc.RpcError as caught:
                    error = caught
            assert error.code() != grpc.StatusCode.UNIMPLEMENTED, path
            assert error.code() != grpc.StatusCode.INTERNAL, (path, error.details())
            if payload:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, path
                assert ("hft-error-code", "malformed") in error.trailing_metadata()


_text = st.text(max_size=80)
_place = st.builds(
    orders_pb2.PlaceRequest,
    account=_text,
    instrument=st.one_of(_text, st.just("NSE:INFY")),
    side=st.integers(0, 3),
    quantity=st.integers(-(2**63), 2**63 - 1),
    order_type=st.integers(0, 6),
    price=st.one_of(st.none(), _text, st.decimals(allow_nan=False, places=3).map(str)),
    trigger_price=st.one_of(st.none(), _text),
    product=st.integers(0, 6),
    time_in_force=st.integers(0, 6),
    disclosed_quantity=st.integers(-(2**63), 2**63 - 1),
    client_order_id=_text,
    tag=_text,
    extras=st.dictionaries(_text, _text, max_size=20),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=_place, scale=st.integers(0, 8))
def test_any_place_request_converts_or_is_refused_cleanly(
    request: orders_pb2.PlaceRequest, scale: int
) -> None:
    try:
        converted = _convert.order_request(request, scale)
    except ValidationError as exc:
        refused = exc
    else:
        assert converted.quantity > 0
        assert converted.price is None or converted.price > 0
        return
    assert refused.status == 400


@pytest.mark.parametrize("price", ["0", "0.00", "-1"])
def test_a_price_that_is_not_positive_is_refused(price: str) -> None:
    request = orders_pb2.PlaceRequest(
        account="a", instrument="NSE:INFY", side=common_pb2.SIDE_BUY, quantity=1, price=price
    )
    with pytest.raises(ValidationError) as refused:
        _convert.order_request(request, 2)
    assert refused.value.code == "invalid"
    assert refused.value.status == 400


@settings(max_examples=200, deadline=None)
@given(
    request=st.builds(
        orders_pb2.ModifyRequest,
        order_id=_text,
        quantity=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        price=st.one_of(st.none(), _text),
        trigger_price=st.one_of(st.none(), _text),
        order_type=st.integers(0, 6),
        time_in_force=st.integers(0, 6),
    ),
    scale=st.integers(0, 8),
)
def test_any_modify_request_converts_or_is_refused_cleanly(
    request: orders_pb2.ModifyRequest, scale: int
) -> None:
    try:
        _convert.modify_request(request, scale)
    except ValidationError as exc:
        refused: ValidationError | None = exc
    else:
        refused = None
    assert refused is None or refused.status == 400


@settings(max_examples=100, deadline=None)
@given(
    ticks=st.lists(
        st.builds(
            market_data_pb2.Tick,
            instrument=_text,
            seq=st.integers(0, 2**64 - 1),
            last_price=st.integers(-(2**63), 2**63 - 1),
            volume=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
        ),
        max_size=300,
    )
)
def test_stream_frames_built_from_shared_bytes_are_the_message(
    ticks: list[market_data_pb2.Tick],
) -> None:
    events = [market_data_pb2.MarketEvent(tick=t) for t in ticks]
    framed = _convert.repeated_field(1, [e.SerializeToString() for e in events])
    assert framed == market_data_pb2.StreamTicksResponse(events=events).SerializeToString()
    assert list(market_data_pb2.StreamTicksResponse.FromString(framed).events) == events
