"""Watch INFY and buy one share at the market, with the hft-websocket SDK.

Run it with ``WS_TOKEN=<access token or API key> python ticks_and_order.py``.
"""

import os

import anyio
from hft_websocket.client import OrderEvent, PositionEvent, Tick, connect


async def main() -> None:
    url = os.environ.get("WS_URL", "ws://127.0.0.1:8765/v1")
    token = os.environ["WS_TOKEN"]  # POST /api/v1/auth/login's access_token, or an API key
    async with connect(url, token, encoding="binary") as client:
        await client.subscribe(["NSE:INFY"], mode="quote")
        [order] = await client.submit(
            account="sim", instrument="NSE:INFY", side="BUY", quantity=1, order_type="MARKET"
        )
        print("placed", order["order_id"], order["status"])
        async for event in client:
            if isinstance(event, Tick):
                print("tick", event.instrument, event.last_price, event.bids[:1], event.asks[:1])
            elif isinstance(event, OrderEvent) and event.order["order_id"] == order["order_id"]:
                print("order", event.kind, event.order["status"])
            elif isinstance(event, PositionEvent):
                print("position", event.position["instrument"], event.position["quantity"])
                if event.position["instrument"] == "NSE:INFY":
                    break


anyio.run(main)  # asyncio; anyio.run(main, backend="trio") works the same
