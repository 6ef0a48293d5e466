"""Bidirectional emulation: HTTP streaming and SSE for networks that block WebSocket.

The client opens a long response (``/connection/http_stream`` or ``/connection/sse``)
whose request carries its connect command; replies and pushes flow down that
response, and every later command arrives in its own POST to ``/emulation`` under
the session id the connect reply named. A POST that reaches another node than the
stream's is forwarded to it through the engine.
"""
