"""hft: a plugin-based trading platform framework.

The public surface is this module, :mod:`hft.hookspecs`, :mod:`hft.model`, :mod:`hft.contracts`
and :mod:`hft.testing`; every other module is private.
"""

from __future__ import annotations

import importlib.metadata

import pluggy

from hft._errors import (
    AuthError,
    BrokerRejected,
    ConfigError,
    Conflict,
    HftError,
    IllegalTransition,
    NetworkError,
    NotFound,
    PluginError,
    RateLimited,
    RiskRejected,
    ValidationError,
    is_auth_error,
    is_network_error,
    is_retryable,
)
from hft._secret import Secret

__all__ = [
    "AuthError",
    "BrokerRejected",
    "ConfigError",
    "Conflict",
    "HftError",
    "IllegalTransition",
    "NetworkError",
    "NotFound",
    "PluginError",
    "RateLimited",
    "RiskRejected",
    "Secret",
    "ValidationError",
    "__version__",
    "hookimpl",
    "is_auth_error",
    "is_network_error",
    "is_retryable",
]

try:
    __version__ = importlib.metadata.version("hft")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

#: Marks a plugin function as the implementation of the hook of the same name.
hookimpl = pluggy.HookimplMarker("hft")
