"""Operations: liveness, readiness, health, and Prometheus metrics. No authentication."""

from __future__ import annotations

import time

import anyio
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

import hft
from hft import HftError
from hft_http import _schemas as s
from hft_http._metrics import CONTENT_TYPE
from hft_http._state import AppState, State

__all__ = ["router"]

router = APIRouter(tags=["operations"])


async def _components(state: AppState) -> dict[str, s.ComponentOut]:
    """``services.readiness()`` plus a storage ping bounded by ``ready_timeout_s``."""
    status = dict(state.services.readiness())
    reason: str | None = None
    with anyio.move_on_after(state.config.ready_timeout_s) as scope:
        try:
            await state.services.storage.ping()
        except HftError as exc:
            reason = exc.message
        except Exception as exc:  # a backend's own failure: still an answer, never a 500
            reason = f"{type(exc).__name__}: {exc}"
    if scope.cancelled_caught:
        reason = f"no answer to a ping within {state.config.ready_timeout_s:g} s"
    status["storage"] = status.get("storage") or reason
    return {name: s.ComponentOut(ready=why is None, reason=why) for name, why in status.items()}


@router.get("/health/live", summary="Liveness")
async def live() -> s.LiveOut:
    """200 while the process serves requests at all."""
    return s.LiveOut(status="alive")


@router.get(
    "/health/ready",
    summary="Readiness",
    response_model=s.ReadyOut,
    responses={503: {"model": s.ReadyOut, "description": "Some component is not ready."}},
)
async def ready(state: State) -> JSONResponse:
    """200 when the storage answers and every configured broker is connected; else 503, and
    the body says which component is not ready and why."""
    components = await _components(state)
    ok = all(c.ready for c in components.values())
    body = s.ReadyOut(status="ready" if ok else "not_ready", components=components)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get("/health", summary="Health")
async def health(state: State) -> s.HealthOut:
    """Always 200 while serving: `ok` when ready, `degraded` otherwise, with each component."""
    components = await _components(state)
    return s.HealthOut(
        status="ok" if all(c.ready for c in components.values()) else "degraded",
        version=hft.__version__,
        uptime_s=round(time.monotonic() - state.started_at, 3),
        components=components,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(state: State) -> Response:
    """Metrics in the Prometheus text format (version 0.0.4)."""
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)
