"""The WebSocket transport: frames (RFC 6455, no I/O), outboxes, the handshake and the server."""
