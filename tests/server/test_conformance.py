"""RFC 6455 conformance of Roomcast's own WebSocket protocol: the Autobahn cases (kosoku).

The cases need an echo server, so the production ``ConnectionProtocol`` and frame
parser run here with an echo session in place of the Centrifugo ``Client``: what is
checked is the framing, masking, fragmentation, control frames, UTF-8 and close
handshake code that every client connection uses.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import sys
from pathlib import Path

import pytest

from roomcast.app import CONNECTIONS, NODE, build_app, start_listener
from roomcast.config import load_settings
from roomcast.node import Node
from roomcast.ws.server import ConnectionProtocol, Gateway

KOSOKU = shutil.which("kosoku") or str(Path(sys.executable).with_name("kosoku"))
#: Groups 1-7 and 10 (framing, pings, reserved bits and opcodes, fragmentation, UTF-8,
#: close handling, limits); 9 is performance, 12 and 13 need compression, which the
#: server never negotiates.
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"]
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}


class EchoSession:
    """Writes every message straight back as one frame, as the cases expect."""

    def __init__(self, node: Node, protocol: ConnectionProtocol, remote: str) -> None:
        self._protocol = protocol

    async def handle_frame(self, text: str) -> None:
        self._write(0x81, text.encode())

    def handle_binary(self, payload: bytes) -> None:
        self._write(0x82, payload)

    async def cleanup(self) -> None:
        return None

    def _write(self, first_byte: int, payload: bytes) -> None:
        raw = self._protocol._raw  # the socket under test; echo bypasses the outbox
        if raw is None or raw.is_closing():
            return
        n = len(payload)
        if n < 126:
            head = bytes((first_byte, n))
        elif n < 65536:
            head = bytes((first_byte, 126)) + struct.pack("!H", n)
        else:
            head = bytes((first_byte, 127)) + struct.pack("!Q", n)
        raw.write(head + payload)


@pytest.mark.skipif(not Path(KOSOKU).exists(), reason="kosoku not installed: make install")
async def test_autobahn_cases(tmp_path: Path) -> None:
    settings = load_settings(
        environ={}, overrides={"websocket": {"message_size_limit": 16 * 1024 * 1024}}
    )
    app = build_app(settings)
    echo = Gateway(app[NODE], app[CONNECTIONS], session_factory=EchoSession, any_path=True)
    listener = await start_listener(app, "127.0.0.1", 0, gateway=echo)
    try:
        args = [KOSOKU, f"127.0.0.1:{listener.port}", "-p", "2", "-o", str(tmp_path)]
        for case in CASES:
            args += ["-i", case]
        process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), 240)
    finally:
        await listener.close()
    results = _read_results(tmp_path, output.decode(errors="replace"))
    assert len(results) > 200
    failed = {case: behavior for case, behavior in results.items() if behavior not in ACCEPTED}
    assert not failed, failed


def _read_results(outdir: Path, output: str) -> dict[str, str]:
    """Case id -> behaviour from the report's index.json."""
    index_files = list(outdir.rglob("index.json"))
    assert index_files, output[-2000:]
    index = json.loads(index_files[0].read_text())
    return {case: result["behavior"] for agent in index.values() for case, result in agent.items()}
