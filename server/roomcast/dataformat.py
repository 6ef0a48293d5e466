"""Publication data that is not JSON: what a JSON connection and the server API make of it.

In a namespace with ``publication_data_format: binary`` a Protobuf client (or the server
API's ``b64data``) may publish any bytes. A Protobuf subscriber receives them as they
are. A JSON connection carries data as raw JSON inside its frames, so it can only take
publications whose data is JSON: one that is not closes it with 3506 (inappropriate
protocol, terminal), as Centrifugo does, and every other subscriber keeps receiving. The
server API answers such a publication in its history as ``b64data``.

Whether a publication's data is JSON is decided once per publication object, lazily,
and only in binary namespaces: a ``json`` namespace checks its data at publish time and
nothing per delivery.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import orjson

from .engine import Publication

log = logging.getLogger(__name__)

#: a channel whose JSON subscribers are closed for non-JSON data is logged once per this
REFUSAL_LOG_INTERVAL_SECONDS = 60.0


def json_form(pub: Publication) -> bytes | None:
    """The data as a JSON connection carries it: as is when it is JSON on one line,
    compacted when it is JSON over several (JSON frames are newline-delimited), None
    when it is not JSON at all. Decided on the first call, then remembered."""
    form = pub.json_form
    if form == b"":
        form = pub.json_form = _decide(pub.data)
    return form


def _decide(data: bytes) -> bytes | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if b"\n" in data or b"\r" in data:
        return orjson.dumps(value)
    return data


def json_wire(pub: Publication) -> dict[str, Any] | None:
    """The Publication object for a JSON connection in a binary namespace; None when
    the data is not JSON and the connection cannot take it."""
    form = json_form(pub)
    return None if form is None else wire_with(pub, form)


def wire_with(pub: Publication, form: bytes) -> dict[str, Any]:
    """The Publication object carrying ``form``, the data as :func:`json_form` gave it."""
    out = pub.wire()
    if form is not pub.data:
        out["data"] = orjson.Fragment(form)
    return out


def api_wire(pub: Publication) -> dict[str, Any]:
    """The Publication object in a server API reply from a binary namespace: ``data``
    when it is JSON, else ``b64data`` (which Centrifugo's API clients read)."""
    out = json_wire(pub)
    if out is None:
        out = pub.wire()
        del out["data"]
        out["b64data"] = base64.b64encode(pub.data).decode()
    return out


class Refusals:
    """Logs the JSON connections closed for non-JSON data, once per channel and interval
    with the number closed meanwhile: one binary publisher may close many subscribers,
    and each close is counted (``roomcast_disconnects_total``) without a line apiece."""

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL_SECONDS) -> None:
        self._interval = interval
        #: channel -> (when it was last logged, closes since)
        self._channels: dict[str, tuple[float, int]] = {}

    def note(self, channel: str) -> None:
        now = time.monotonic()
        logged, closed = self._channels.get(channel, (-self._interval, 0))
        closed += 1
        if now - logged < self._interval:
            self._channels[channel] = (logged, closed)
            return
        if len(self._channels) >= 4096:
            self._channels = {
                c: v for c, v in self._channels.items() if now - v[0] < self._interval
            }
        self._channels[channel] = (now, 0)
        log.warning(
            "publication data is not JSON: JSON connections subscribed to the channel are "
            "closed with 3506 (publication_data_format is binary; use the Protobuf protocol)",
            extra={"channel": channel, "closed": closed},
        )
