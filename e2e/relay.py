"""A TCP relay: ``python3 e2e/relay.py LISTEN_HOST:PORT TARGET_HOST:PORT``.

The bed's API server listens on 127.0.0.1 only. Pods on the real node reach it through
the ``kubernetes`` Service, whose endpoint is the node's own address: this relay listens
there and passes every byte on to the API server unchanged (TLS runs end to end between
the pod and the API server, so the relay sees nothing but ciphertext). Standard library
only, like the rest of the bed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _serve_one(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer)
        )
    finally:
        for writer in (client_writer, upstream_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def relay(listen: tuple[str, int], target: tuple[str, int]) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = await asyncio.start_server(
        lambda r, w: _serve_one(r, w, target), listen[0], listen[1], reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"relaying {listen[0]}:{listen[1]} to {target[0]}:{target[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n")[0], file=sys.stderr)
        return 2
    try:
        listen, target = _address(argv[0]), _address(argv[1])
    except ValueError as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2
    asyncio.run(relay(listen, target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
