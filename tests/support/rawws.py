"""A WebSocket client written by hand, for tests that send what no SDK would.

It writes exactly the request head it is given (any request-target form, on a new
or a kept-alive connection) and frames masked or not, and reads frames as sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct

from tests.support.tokens import token

PATH = "/connection/websocket"


def upgrade_head(target: str = PATH, host: str = "127.0.0.1", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def frame(
    opcode: int, payload: bytes, *, masked: bool = True, fin: bool = True, rsv: int = 0
) -> bytes:
    """A client frame: masked (unless told not to), final (unless told not to)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65_536:
        head = bytes((first, bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, bit | 127)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    key = int.from_bytes(mask * (n // 4 + 1), "little") & ((1 << (8 * n)) - 1)
    return head + mask + (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


class RawSocket:
    """One TCP connection: HTTP heads, then frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, receive_buffer: int = 0) -> RawSocket:
        """Connect; ``receive_buffer`` makes the kernel's receive buffer that small
        (a client that stops reading then fills the server's queue quickly)."""
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    async def __aenter__(self) -> RawSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def request(self, head: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
        """Send a request head; the response's status and its head and body (if any)."""
        self.writer.write(head)
        response = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(response.split(b" ", 2)[1])
        for line in response.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                response += await self.reader.readexactly(int(value))
        return status, response

    async def upgrade(self, target: str = PATH, host: str = "127.0.0.1", extra: str = "") -> int:
        status, _ = await self.request(upgrade_head(target, host, extra))
        return status

    def send(self, opcode: int, payload: bytes, *, masked: bool = True) -> None:
        self.writer.write(frame(opcode, payload, masked=masked))

    def send_text(self, text: str) -> None:
        self.send(0x1, text.encode())

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next frame's opcode and payload."""
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def close_code(self, timeout: float = 5.0) -> int:
        """Read until the close frame; its code."""
        while True:
            opcode, payload = await self.read_frame(timeout)
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005

    async def connect(self) -> bytes:
        """Send the protocol's connect command with a valid token; the reply frame."""
        self.send_text(json.dumps({"id": 1, "connect": {"token": token()}}))
        opcode, payload = await self.read_frame()
        assert opcode == 0x1, payload
        return payload
