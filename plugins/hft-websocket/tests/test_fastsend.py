"""The direct path for binary frames, against a real trio-websocket connection on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio_websocket
from hft_websocket._fastsend import FrameSender, frame_header
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameDecoder, Opcode


@given(st.integers(0, 70_000))
@settings(max_examples=60, deadline=None)
def test_a_header_and_payload_parse_as_one_final_binary_frame(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    decoder = FrameDecoder(client=True)  # a client reads unmasked server frames
    decoder.receive_bytes(frame_header(size) + payload)
    frame = decoder.process_buffer()
    assert frame is not None
    assert frame.opcode is Opcode.BINARY
    assert frame.frame_finished
    assert frame.message_finished
    assert bytes(frame.payload) == payload


@asynccontextmanager
async def connected() -> AsyncIterator[
    tuple[trio_websocket.WebSocketConnection, trio_websocket.WebSocketConnection]
]:
    accepted: trio.MemoryReceiveChannel[trio_websocket.WebSocketConnection]
    send, accepted = trio.open_memory_channel(1)

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await send.send(ws)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        async with trio_websocket.open_websocket(
            "127.0.0.1", server.port, "/", use_ssl=False, max_message_size=1 << 25
        ) as client:
            yield await accepted.receive(), client
        nursery.cancel_scope.cancel()


async def read(client: trio_websocket.WebSocketConnection, count: int, into: list[object]) -> None:
    for _ in range(count):
        into.append(await client.get_message())


@pytest.mark.anyio
async def test_frames_sent_directly_arrive_whole_and_in_order_with_the_librarys_own() -> None:
    async with connected() as (server, client):
        sender = FrameSender(server)
        assert sender.ready()
        sent: list[bytes | str] = []
        for n in range(40):
            message = bytes([n]) * (n * 100 + 1)
            if n % 5 == 0:
                await sender.flush()
                await server.send_message(f"text {n}")  # trio-websocket's own path between
                sent.append(f"text {n}")
            if sender.ready():
                sender.send_now(message)
            else:
                await sender.send(message)
            sent.append(message)
        await sender.flush()
        assert sender.direct > 0
        received: list[object] = []
        await read(client, len(sent), received)
        assert received == sent


@pytest.mark.anyio
async def test_a_full_socket_keeps_the_rest_for_later_and_loses_nothing() -> None:
    async with connected() as (server, client):
        sender = FrameSender(server)
        # The first far beyond any socket buffer, so the kernel cannot take it whole.
        big = [b"\xff" * 16_000_000] + [bytes([n]) * 200_000 for n in range(29)]
        sender.send_now(big[0])
        assert sender.has_tail  # the kernel took part of it; the rest waits its turn
        assert not sender.ready()
        received: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, client, len(big), received)
            for message in big[1:]:
                await sender.send(message)  # the kept tail first, then this one
            await sender.flush()
        assert received == big
        assert not sender.has_tail


@pytest.mark.anyio
async def test_a_closed_connection_takes_the_librarys_path_and_raises_closed() -> None:
    async with connected() as (server, client):
        sender = FrameSender(server)
        await client.aclose()  # returns once the closing handshake is done
        with trio.fail_after(5):
            while server.closed is None:  # noqa: ASYNC110 - the server's reader task sets it
                await trio.sleep(0.01)
        assert not sender.ready()
        with pytest.raises(trio_websocket.ConnectionClosed):
            await sender.send(b"late")
