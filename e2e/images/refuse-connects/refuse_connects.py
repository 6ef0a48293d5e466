"""A deliberately broken build of Roomcast, for the automatic rollback test.

Loaded at interpreter start (``refuse_connects.pth``), it makes every connect fail with
an internal error: the pods start, pass their probes and look healthy to Kubernetes,
yet no client can connect. Only the operator's realtime judge can tell.
"""

from typing import Any

import roomcast.client


async def _refuse(self: Any, request: Any) -> Any:
    raise RuntimeError("this build refuses every connect")


# The dispatch table holds the handlers themselves; replace the one it calls.
roomcast.client._HANDLERS["connect"] = _refuse
