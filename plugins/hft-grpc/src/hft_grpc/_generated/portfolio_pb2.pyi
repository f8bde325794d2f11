# mypy: disable-error-code="type-arg"
from hft_grpc._generated import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PositionsRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class PositionsResponse(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("account", "instrument", "product", "quantity", "average_price", "last_price", "realised_pnl", "unrealised_pnl", "buy_quantity", "buy_value", "sell_quantity", "sell_value")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    REALISED_PNL_FIELD_NUMBER: _ClassVar[int]
    UNREALISED_PNL_FIELD_NUMBER: _ClassVar[int]
    BUY_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BUY_VALUE_FIELD_NUMBER: _ClassVar[int]
    SELL_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SELL_VALUE_FIELD_NUMBER: _ClassVar[int]
    account: str
    instrument: str
    product: _common_pb2.Product
    quantity: int
    average_price: str
    last_price: str
    realised_pnl: str
    unrealised_pnl: str
    buy_quantity: int
    buy_value: str
    sell_quantity: int
    sell_value: str
    def __init__(self, account: _Optional[str] = ..., instrument: _Optional[str] = ..., product: _Optional[_Union[_common_pb2.Product, str]] = ..., quantity: _Optional[int] = ..., average_price: _Optional[str] = ..., last_price: _Optional[str] = ..., realised_pnl: _Optional[str] = ..., unrealised_pnl: _Optional[str] = ..., buy_quantity: _Optional[int] = ..., buy_value: _Optional[str] = ..., sell_quantity: _Optional[int] = ..., sell_value: _Optional[str] = ...) -> None: ...

class HoldingsRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class HoldingsResponse(_message.Message):
    __slots__ = ("holdings",)
    HOLDINGS_FIELD_NUMBER: _ClassVar[int]
    holdings: _containers.RepeatedCompositeFieldContainer[Holding]
    def __init__(self, holdings: _Optional[_Iterable[_Union[Holding, _Mapping]]] = ...) -> None: ...

class Holding(_message.Message):
    __slots__ = ("account", "instrument", "quantity", "t1_quantity", "average_price", "last_price", "isin")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    T1_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRICE_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    ISIN_FIELD_NUMBER: _ClassVar[int]
    account: str
    instrument: str
    quantity: int
    t1_quantity: int
    average_price: str
    last_price: str
    isin: str
    def __init__(self, account: _Optional[str] = ..., instrument: _Optional[str] = ..., quantity: _Optional[int] = ..., t1_quantity: _Optional[int] = ..., average_price: _Optional[str] = ..., last_price: _Optional[str] = ..., isin: _Optional[str] = ...) -> None: ...

class AccountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AccountsResponse(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "broker", "broker_account", "environment", "name")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    BROKER_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    broker: str
    broker_account: str
    environment: _common_pb2.Environment
    name: str
    def __init__(self, account_id: _Optional[str] = ..., broker: _Optional[str] = ..., broker_account: _Optional[str] = ..., environment: _Optional[_Union[_common_pb2.Environment, str]] = ..., name: _Optional[str] = ...) -> None: ...
