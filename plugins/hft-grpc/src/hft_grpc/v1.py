"""The generated ``hft.v1`` messages and client stubs, for Python clients of the gRPC transport.

``from hft_grpc.v1 import orders_pb2, orders_pb2_grpc`` and so on: one ``*_pb2`` (messages and
enums) and one ``*_pb2_grpc`` (``...ServiceStub``) module per file of ``proto/hft/v1``.
"""

from __future__ import annotations

from hft_grpc._generated import (
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    market_data_pb2,
    market_data_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    portfolio_pb2,
    portfolio_pb2_grpc,
)

__all__ = [
    "auth_pb2",
    "auth_pb2_grpc",
    "common_pb2",
    "market_data_pb2",
    "market_data_pb2_grpc",
    "orders_pb2",
    "orders_pb2_grpc",
    "portfolio_pb2",
    "portfolio_pb2_grpc",
]
