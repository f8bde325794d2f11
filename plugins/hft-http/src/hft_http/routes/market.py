"""Instruments, quotes and each user's market watch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query

from hft import Conflict, HftError, NotFound
from hft.model import Instrument, InstrumentType, Tick
from hft_http import _convert
from hft_http import _schemas as s
from hft_http._state import AppState, CurrentUser, State
from hft_http.routes._common import API_PREFIX, AUTHED, errors

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX)

#: ``storage.put_state`` namespace of the market watch; the key is the username.


@router.get(
    "/instruments",
    tags=["instruments"],
    summary="Search instruments",
    responses=errors(400, *AUTHED),
)
async def search_instruments(
    user: CurrentUser,
    state: State,
    q: Annotated[
        str | None,
        Query(max_length=64, description="Matches the start of the symbol or key, or the name."),
    ] = None,
    exchange: Annotated[str | None, Query(max_length=16)] = None,
    instrument_type: InstrumentType | None = None,
    broker: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[s.InstrumentOut]:
    """Instruments of the connected brokers, best matches first (case-insensitive)."""
    needle = (q or "").strip().upper()
    exact: list[s.InstrumentOut] = []
    prefix: list[s.InstrumentOut] = []
    named: list[s.InstrumentOut] = []
    for name, handle in state.services.brokers.items():
        if broker is not None and name != broker:
            continue
        for instrument in handle.instruments.values():
            if exchange is not None and instrument.exchange.upper() != exchange.upper():
                continue
            if instrument_type is not None and instrument.instrument_type is not instrument_type:
                continue
            bucket = _match(instrument, needle, exact, prefix, named)
            if bucket is not None:
                bucket.append(_convert.instrument_out(instrument, name))
    return [*exact, *prefix, *named][:limit]


def _match(
    instrument: Instrument,
    needle: str,
    exact: list[s.InstrumentOut],
    prefix: list[s.InstrumentOut],
    named: list[s.InstrumentOut],
) -> list[s.InstrumentOut] | None:
    if not needle:
        return prefix
    symbol, key = instrument.symbol.upper(), instrument.key.upper()
    if needle in (symbol, key):
        return exact
    if symbol.startswith(needle) or key.startswith(needle):
        return prefix
    if needle in instrument.name.upper():
        return named
    return None


@router.get(
    "/instruments/{key}",
    tags=["instruments"],
    summary="Get an instrument",
    responses=errors(400, 404, *AUTHED),
)
async def get_instrument(
    key: str,
    user: CurrentUser,
    state: State,
    broker: Annotated[
        str | None, Query(max_length=64, description="Default: the first broker listing it.")
    ] = None,
) -> s.InstrumentOut:
    """One instrument by key (`NSE:INFY`), with its tick size, lot size and price scale."""
    name, instrument = state.find_instrument(key, broker)
    return _convert.instrument_out(instrument, name)


async def _quotes(
    state: AppState, keys: Sequence[str], *, skip_unknown: bool = False
) -> dict[str, s.QuoteOut]:
    """The hub's latest tick of each instrument, else a snapshot from the broker listing it.

    An instrument no broker lists raises NotFound, or is left out with ``skip_unknown``.
    """
    out: dict[str, s.QuoteOut] = {}
    missing: dict[str, list[Instrument]] = {}
    for key in keys:
        try:
            name, instrument = state.find_instrument(key)
        except NotFound:
            if skip_unknown:
                continue
            raise
        tick = state.services.hub.latest(key)
        if tick is not None:
            out[key] = _convert.quote_out(tick, instrument.price_scale)
        else:
            missing.setdefault(name, []).append(instrument)
    for name, instruments in missing.items():
        handle = state.services.brokers[name]
        if not handle.ready:
            continue
        try:
            snapshots: dict[str, Tick] = await handle.broker.quotes(instruments)
        except HftError:
            continue  # no quotes from this broker now: those instruments have no data
        for instrument in instruments:
            tick = snapshots.get(instrument.key)
            if tick is not None:
                out[instrument.key] = _convert.quote_out(tick, instrument.price_scale)
    return out


@router.get("/quotes", tags=["market data"], summary="Quotes", responses=errors(400, 404, *AUTHED))
async def quotes(
    user: CurrentUser,
    state: State,
    instruments: Annotated[
        list[str],
        Query(min_length=1, max_length=50, description="Instrument keys; repeat the parameter."),
    ],
) -> s.QuotesOut:
    """The latest quote of each instrument (404 when one is unknown to every broker)."""
    return s.QuotesOut(quotes=await _quotes(state, list(dict.fromkeys(instruments))))


# Market watch -----------------------------------------------------------------------------------


async def _watchlist(state: AppState, instruments: list[str]) -> s.WatchlistOut:
    # An instrument that has left every broker's list (an expired future) keeps its place.
    latest = await _quotes(state, instruments, skip_unknown=True)
    return s.WatchlistOut(instruments=instruments, quotes=latest)


@router.get(
    "/watchlist", tags=["market watch"], summary="My market watch", responses=errors(503, *AUTHED)
)
async def get_watchlist(user: CurrentUser, state: State) -> s.WatchlistOut:
    """The user's watched instruments, in the order added, with their latest quotes."""
    return await _watchlist(state, await state.services.watchlist(user.username))


@router.post(
    "/watchlist",
    tags=["market watch"],
    summary="Watch an instrument",
    responses=errors(400, 404, 409, 503, *AUTHED),
)
async def add_to_watchlist(body: s.WatchIn, user: CurrentUser, state: State) -> s.WatchlistOut:
    """Add an instrument (known to a connected broker) to the market watch; adding one already
    there changes nothing. The list is stored, so it survives restarts."""
    state.find_instrument(body.instrument)
    async with state.lock(f"watch:{user.username}"):
        instruments = await state.services.watchlist(user.username)
        if body.instrument not in instruments:
            if len(instruments) >= state.config.max_watchlist:
                raise Conflict(
                    f"the market watch holds at most {state.config.max_watchlist} instruments",
                    code="watchlist_full",
                )
            instruments.append(body.instrument)
            await state.services.set_watchlist(user.username, instruments)
    return await _watchlist(state, instruments)


@router.delete(
    "/watchlist/{instrument}",
    tags=["market watch"],
    summary="Stop watching an instrument",
    responses=errors(404, 503, *AUTHED),
)
async def remove_from_watchlist(instrument: str, user: CurrentUser, state: State) -> s.WatchlistOut:
    """Remove an instrument from the market watch (404 when it is not there)."""
    async with state.lock(f"watch:{user.username}"):
        instruments = await state.services.watchlist(user.username)
        if instrument not in instruments:
            raise NotFound(f"{instrument!r} is not in the market watch")
        instruments.remove(instrument)
        await state.services.set_watchlist(user.username, instruments)
    return await _watchlist(state, instruments)
