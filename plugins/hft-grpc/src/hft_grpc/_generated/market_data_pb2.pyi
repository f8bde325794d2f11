# mypy: disable-error-code="type-arg"
from hft_grpc._generated import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTION_STATE_UNSPECIFIED: _ClassVar[ConnectionState]
    CONNECTION_STATE_CONNECTED: _ClassVar[ConnectionState]
    CONNECTION_STATE_RECONNECTING: _ClassVar[ConnectionState]
    CONNECTION_STATE_RESYNCED: _ClassVar[ConnectionState]
    CONNECTION_STATE_DISCONNECTED: _ClassVar[ConnectionState]
CONNECTION_STATE_UNSPECIFIED: ConnectionState
CONNECTION_STATE_CONNECTED: ConnectionState
CONNECTION_STATE_RECONNECTING: ConnectionState
CONNECTION_STATE_RESYNCED: ConnectionState
CONNECTION_STATE_DISCONNECTED: ConnectionState

class QuotesRequest(_message.Message):
    __slots__ = ("instruments",)
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instruments: _Optional[_Iterable[str]] = ...) -> None: ...

class QuotesResponse(_message.Message):
    __slots__ = ("quotes",)
    QUOTES_FIELD_NUMBER: _ClassVar[int]
    quotes: _containers.RepeatedCompositeFieldContainer[Tick]
    def __init__(self, quotes: _Optional[_Iterable[_Union[Tick, _Mapping]]] = ...) -> None: ...

class StreamTicksRequest(_message.Message):
    __slots__ = ("instruments", "mode")
    INSTRUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    instruments: _containers.RepeatedScalarFieldContainer[str]
    mode: _common_pb2.StreamMode
    def __init__(self, instruments: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[_common_pb2.StreamMode, str]] = ...) -> None: ...

class StreamTicksResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[MarketEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[MarketEvent, _Mapping]]] = ...) -> None: ...

class MarketEvent(_message.Message):
    __slots__ = ("tick", "connection")
    TICK_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    tick: Tick
    connection: ConnectionStatus
    def __init__(self, tick: _Optional[_Union[Tick, _Mapping]] = ..., connection: _Optional[_Union[ConnectionStatus, _Mapping]] = ...) -> None: ...

class Tick(_message.Message):
    __slots__ = ("instrument", "seq", "mode", "price_scale", "last_price", "timestamp_ns", "last_quantity", "volume", "average_price", "total_buy_quantity", "total_sell_quantity", "open_interest", "ohlc", "bids", "asks")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PRICE_SCALE_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    LAST_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BUY_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SELL_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    OPEN_INTEREST_FIELD_NUMBER: _ClassVar[int]
    OHLC_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    seq: int
    mode: _common_pb2.StreamMode
    price_scale: int
    last_price: int
    timestamp_ns: int
    last_quantity: int
    volume: int
    average_price: int
    total_buy_quantity: int
    total_sell_quantity: int
    open_interest: int
    ohlc: Ohlc
    bids: _containers.RepeatedCompositeFieldContainer[DepthLevel]
    asks: _containers.RepeatedCompositeFieldContainer[DepthLevel]
    def __init__(self, instrument: _Optional[str] = ..., seq: _Optional[int] = ..., mode: _Optional[_Union[_common_pb2.StreamMode, str]] = ..., price_scale: _Optional[int] = ..., last_price: _Optional[int] = ..., timestamp_ns: _Optional[int] = ..., last_quantity: _Optional[int] = ..., volume: _Optional[int] = ..., average_price: _Optional[int] = ..., total_buy_quantity: _Optional[int] = ..., total_sell_quantity: _Optional[int] = ..., open_interest: _Optional[int] = ..., ohlc: _Optional[_Union[Ohlc, _Mapping]] = ..., bids: _Optional[_Iterable[_Union[DepthLevel, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[DepthLevel, _Mapping]]] = ...) -> None: ...

class Ohlc(_message.Message):
    __slots__ = ("open", "high", "low", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: int
    high: int
    low: int
    close: int
    def __init__(self, open: _Optional[int] = ..., high: _Optional[int] = ..., low: _Optional[int] = ..., close: _Optional[int] = ...) -> None: ...

class DepthLevel(_message.Message):
    __slots__ = ("price", "quantity", "orders")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    price: int
    quantity: int
    orders: int
    def __init__(self, price: _Optional[int] = ..., quantity: _Optional[int] = ..., orders: _Optional[int] = ...) -> None: ...

class ConnectionStatus(_message.Message):
    __slots__ = ("broker", "state", "reason", "at")
    BROKER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    broker: str
    state: ConnectionState
    reason: str
    at: _common_pb2.Timestamp
    def __init__(self, broker: _Optional[str] = ..., state: _Optional[_Union[ConnectionState, str]] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[_common_pb2.Timestamp, _Mapping]] = ...) -> None: ...
