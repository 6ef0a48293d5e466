"""One timer per expiring thing (a connection, a subscription), checked after a grace delay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def schedule_expiry(
    expire_at: int, grace_seconds: float, check: Callable[[], None]
) -> asyncio.TimerHandle:
    """Call ``check`` ``grace_seconds`` after ``expire_at`` (unix seconds), at once if past.

    ``check`` decides again when it runs: a refresh may have moved the expiry meanwhile.
    """
    delay = expire_at - time.time() + grace_seconds
    return asyncio.get_running_loop().call_later(max(0.0, delay), check)
