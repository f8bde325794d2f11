"""The ``grpc`` plugin: hook implementations only. Importing this module does no I/O."""

from __future__ import annotations

import hft
from hft._plugins import PluginContext
from hft.hookspecs import RegisterTransport
from hft_grpc.config import GrpcConfig
from hft_grpc.transport import GrpcTransport


def _make_transport(config: GrpcConfig, context: PluginContext) -> GrpcTransport:
    return GrpcTransport(config)


@hft.hookimpl
def hft_register_transports(register: RegisterTransport) -> None:
    register("grpc", _make_transport, config=GrpcConfig)
