"""hft-grpc: the gRPC transport of hft (package ``hft.v1``: auth, orders, market data,
portfolio).

The plugin registers the transport ``grpc``; configure it under ``[transports.grpc]`` (see
:class:`GrpcConfig`). ``proto/hft/v1/*.proto`` is the contract; ``README.md`` lists the
metadata, status codes and an example client. The generated modules are ``hft_grpc._generated``.
"""

from __future__ import annotations

from hft_grpc.config import GrpcConfig
from hft_grpc.transport import GrpcTransport

__all__ = ["GrpcConfig", "GrpcTransport"]
