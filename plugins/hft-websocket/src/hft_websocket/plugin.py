"""The ``websocket`` plugin: hook implementations only. Importing this module does no I/O."""

from __future__ import annotations

import hft
from hft._plugins import PluginContext
from hft.hookspecs import RegisterTransport
from hft_websocket.config import WebsocketConfig
from hft_websocket.transport import WebsocketTransport


def _make_transport(config: WebsocketConfig, context: PluginContext) -> WebsocketTransport:
    return WebsocketTransport(config)


@hft.hookimpl
def hft_register_transports(register: RegisterTransport) -> None:
    register("websocket", _make_transport, config=WebsocketConfig)
