"""The ``http`` plugin: hook implementations only. Importing this module does no I/O."""

from __future__ import annotations

import hft
from hft._plugins import PluginContext
from hft.hookspecs import RegisterTransport
from hft_http.config import HttpConfig
from hft_http.transport import HttpTransport


def _make_transport(config: HttpConfig, context: PluginContext) -> HttpTransport:
    return HttpTransport(config)


@hft.hookimpl
def hft_register_transports(register: RegisterTransport) -> None:
    register("http", _make_transport, config=HttpConfig)
