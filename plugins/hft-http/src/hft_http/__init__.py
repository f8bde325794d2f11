"""hft-http: the REST transport of hft (API under ``/api/v1``, health, metrics, OpenAPI).

The plugin registers the transport ``http``; configure it under ``[transports.http]`` (see
:class:`HttpConfig`). ``README.md`` lists the endpoints, headers, error shape and metrics.
"""

from __future__ import annotations

from hft_http.app import API_PREFIX, build_app
from hft_http.config import HttpConfig
from hft_http.transport import HttpTransport

__all__ = ["API_PREFIX", "HttpConfig", "HttpTransport", "build_app"]
