"""Roomcast: a realtime WebSocket server speaking the Centrifugo client protocol."""

__version__ = "0.1.0"
