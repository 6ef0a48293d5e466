"""Engines: where publications, history and presence live (memory or Redis)."""

from .base import (
    ClientInfo,
    Engine,
    EngineEventHandler,
    EngineUnavailable,
    HistoryOptions,
    HistoryResult,
    NodeInfo,
    Publication,
    StreamPosition,
)

__all__ = [
    "ClientInfo",
    "Engine",
    "EngineEventHandler",
    "EngineUnavailable",
    "HistoryOptions",
    "HistoryResult",
    "NodeInfo",
    "Publication",
    "StreamPosition",
]
