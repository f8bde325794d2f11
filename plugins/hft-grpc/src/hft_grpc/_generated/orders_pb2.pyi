# mypy: disable-error-code="type-arg"
from hft_grpc._generated import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_EVENT_KIND_UNSPECIFIED: _ClassVar[OrderEventKind]
    ORDER_EVENT_KIND_CREATED: _ClassVar[OrderEventKind]
    ORDER_EVENT_KIND_ACCEPTED: _ClassVar[OrderEventKind]
    ORDER_EVENT_KIND_STATUS: _ClassVar[OrderEventKind]
    ORDER_EVENT_KIND_FILL: _ClassVar[OrderEventKind]
    ORDER_EVENT_KIND_MODIFIED: _ClassVar[OrderEventKind]
ORDER_EVENT_KIND_UNSPECIFIED: OrderEventKind
ORDER_EVENT_KIND_CREATED: OrderEventKind
ORDER_EVENT_KIND_ACCEPTED: OrderEventKind
ORDER_EVENT_KIND_STATUS: OrderEventKind
ORDER_EVENT_KIND_FILL: OrderEventKind
ORDER_EVENT_KIND_MODIFIED: OrderEventKind

class PlaceRequest(_message.Message):
    __slots__ = ("account", "instrument", "side", "quantity", "order_type", "price", "trigger_price", "product", "time_in_force", "disclosed_quantity", "client_order_id", "tag", "extras")
    class ExtrasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PRICE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    DISCLOSED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    EXTRAS_FIELD_NUMBER: _ClassVar[int]
    account: str
    instrument: str
    side: _common_pb2.Side
    quantity: int
    order_type: _common_pb2.OrderType
    price: str
    trigger_price: str
    product: _common_pb2.Product
    time_in_force: _common_pb2.TimeInForce
    disclosed_quantity: int
    client_order_id: str
    tag: str
    extras: _containers.ScalarMap[str, str]
    def __init__(self, account: _Optional[str] = ..., instrument: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., quantity: _Optional[int] = ..., order_type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., price: _Optional[str] = ..., trigger_price: _Optional[str] = ..., product: _Optional[_Union[_common_pb2.Product, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., disclosed_quantity: _Optional[int] = ..., client_order_id: _Optional[str] = ..., tag: _Optional[str] = ..., extras: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PlaceResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...

class ModifyRequest(_message.Message):
    __slots__ = ("order_id", "quantity", "price", "trigger_price", "order_type", "time_in_force")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PRICE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    quantity: int
    price: str
    trigger_price: str
    order_type: _common_pb2.OrderType
    time_in_force: _common_pb2.TimeInForce
    def __init__(self, order_id: _Optional[str] = ..., quantity: _Optional[int] = ..., price: _Optional[str] = ..., trigger_price: _Optional[str] = ..., order_type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ...) -> None: ...

class ModifyResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("account", "status", "instrument", "side", "offset", "limit")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    account: str
    status: _common_pb2.OrderStatus
    instrument: str
    side: _common_pb2.Side
    offset: int
    limit: int
    def __init__(self, account: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.OrderStatus, str]] = ..., instrument: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("orders", "total", "next_offset")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    total: int
    next_offset: int
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., total: _Optional[int] = ..., next_offset: _Optional[int] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("after_seq",)
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    def __init__(self, after_seq: _Optional[int] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("started", "event")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    event: OrderEvent
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., event: _Optional[_Union[OrderEvent, _Mapping]] = ...) -> None: ...

class StreamStarted(_message.Message):
    __slots__ = ("after_seq",)
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    def __init__(self, after_seq: _Optional[int] = ...) -> None: ...

class OrderEvent(_message.Message):
    __slots__ = ("seq", "kind", "order")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: OrderEventKind
    order: Order
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[OrderEventKind, str]] = ..., order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "account", "instrument", "side", "quantity", "order_type", "price", "trigger_price", "product", "time_in_force", "disclosed_quantity", "client_order_id", "tag", "status", "filled_quantity", "remaining_quantity", "average_price", "broker_order_id", "exchange_order_id", "reason", "user", "created_at", "history")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PRICE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    DISCLOSED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    BROKER_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    EXCHANGE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    account: str
    instrument: str
    side: _common_pb2.Side
    quantity: int
    order_type: _common_pb2.OrderType
    price: str
    trigger_price: str
    product: _common_pb2.Product
    time_in_force: _common_pb2.TimeInForce
    disclosed_quantity: int
    client_order_id: str
    tag: str
    status: _common_pb2.OrderStatus
    filled_quantity: int
    remaining_quantity: int
    average_price: str
    broker_order_id: str
    exchange_order_id: str
    reason: str
    user: str
    created_at: _common_pb2.Timestamp
    history: _containers.RepeatedCompositeFieldContainer[StatusChange]
    def __init__(self, order_id: _Optional[str] = ..., account: _Optional[str] = ..., instrument: _Optional[str] = ..., side: _Optional[_Union[_common_pb2.Side, str]] = ..., quantity: _Optional[int] = ..., order_type: _Optional[_Union[_common_pb2.OrderType, str]] = ..., price: _Optional[str] = ..., trigger_price: _Optional[str] = ..., product: _Optional[_Union[_common_pb2.Product, str]] = ..., time_in_force: _Optional[_Union[_common_pb2.TimeInForce, str]] = ..., disclosed_quantity: _Optional[int] = ..., client_order_id: _Optional[str] = ..., tag: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.OrderStatus, str]] = ..., filled_quantity: _Optional[int] = ..., remaining_quantity: _Optional[int] = ..., average_price: _Optional[str] = ..., broker_order_id: _Optional[str] = ..., exchange_order_id: _Optional[str] = ..., reason: _Optional[str] = ..., user: _Optional[str] = ..., created_at: _Optional[_Union[_common_pb2.Timestamp, _Mapping]] = ..., history: _Optional[_Iterable[_Union[StatusChange, _Mapping]]] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("status", "at", "reason")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.OrderStatus
    at: _common_pb2.Timestamp
    reason: str
    def __init__(self, status: _Optional[_Union[_common_pb2.OrderStatus, str]] = ..., at: _Optional[_Union[_common_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...
