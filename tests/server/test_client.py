"""The client protocol against a real server, following the Centrifugo protocol's transcripts."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.processes import PROTOCOL_CONFIG, SECRET, ServerProcess, token
from tests.wsclient import Closed, RawClient

T42OLD = token(exp=1_000_000_000, ttl=None)
TBAD = token(secret="wrong-secret-wrong-secret-wrong-secret")


def channel(prefix: str = "chat") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def test_connect_reply_shape(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        reply = await c.connect(token(), cmd_id=10)
        result = reply["connect"]
        assert reply["id"] == 10
        assert uuid.UUID(result["client"])
        assert result["ping"] == 25 and result["pong"] is True
        assert set(result) == {"client", "version", "expires", "ttl", "ping", "pong"}


async def test_token_without_exp_refused_by_default(protocol_server: ServerProcess) -> None:
    """RFC 8725: exp is required unless client.token.require_exp is false."""
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.send({"id": 1, "connect": {"token": token(ttl=None)}})
        assert await c.closed() == 3500


async def test_connect_with_exp_reports_ttl(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        result = (await c.connect(token(ttl=600)))["connect"]
        assert result["expires"] is True
        assert 595 <= result["ttl"] <= 600


async def test_expired_token_gets_109(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        reply = await c.connect(T42OLD)
        assert reply["error"] == {"code": 109, "message": "token expired"}


async def test_bad_signature_closes_3500(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.send({"id": 1, "connect": {"token": TBAD}})
        assert await c.closed() == 3500


async def test_anonymous_without_token_closes_3501(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.send({"id": 1, "connect": {"name": "js"}})
        assert await c.closed() == 3501


async def test_command_before_connect_closes_3501(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.send({"id": 1, "subscribe": {"channel": "chat"}})
        assert await c.closed() == 3501


async def test_second_connect_closes_3501(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        await c.send({"id": 2, "connect": {"token": token()}})
        assert await c.closed() == 3501


async def test_connect_and_subscribe_in_one_frame(protocol_server: ServerProcess) -> None:
    """T2: the JS SDK batches connect and subscribe before seeing the connect reply."""
    ch = channel()
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.send(
            {"connect": {"token": token(), "name": "js"}, "id": 1},
            {"subscribe": {"channel": ch, "flag": 1}, "id": 2},
        )
        first = await c.recv()
        assert first["id"] == 1 and "connect" in first
        client_id = first["connect"]["client"]
        sub = await c.recv()
        assert sub["id"] == 2
        assert sub["subscribe"]["recoverable"] is True
        assert sub["subscribe"]["positioned"] is True
        assert len(sub["subscribe"]["epoch"]) == 8
        join = await c.recv()
        assert join == {
            "push": {"channel": ch, "join": {"info": {"user": "42", "client": client_id}}}
        }
        published = protocol_server.api("publish", {"channel": ch, "data": {"text": "hello"}})
        assert published["result"]["offset"] == 1
        assert published["result"]["epoch"] == sub["subscribe"]["epoch"]
        assert await c.recv() == {
            "push": {"channel": ch, "pub": {"data": {"text": "hello"}, "offset": 1}}
        }


async def test_private_unknown_and_duplicate_subscribe(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        sub_token = token(channel="$secret:room")
        ok = await c.call(3, "subscribe", {"channel": "$secret:room", "token": sub_token})
        assert ok["subscribe"]["expires"] is True and 3590 <= ok["subscribe"]["ttl"] <= 3600
        assert set(ok["subscribe"]) == {"expires", "ttl"}
        denied = await c.call(4, "subscribe", {"channel": "$secret:other"})
        assert denied["error"] == {"code": 103, "message": "permission denied"}
        unknown = await c.call(5, "subscribe", {"channel": "nope:x"})
        assert unknown["error"] == {"code": 102, "message": "unknown channel"}
        again = await c.call(6, "subscribe", {"channel": "$secret:room", "token": sub_token})
        assert again["error"]["code"] == 105
        not_token_ns = await c.call(7, "subscribe", {"channel": "secret:open"})
        assert not_token_ns["error"]["code"] == 103


async def test_subscription_token_for_other_channel_closes_3500(
    protocol_server: ServerProcess,
) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        await c.send(
            {"id": 2, "subscribe": {"channel": "$secret:a", "token": token(channel="$secret:b")}}
        )
        assert await c.closed() == 3500


async def test_user_limited_channel(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token("42"))
        ok = await c.call(2, "subscribe", {"channel": "dialog:#42,43"})
        assert ok == {"id": 2, "subscribe": {}}
        denied = await c.call(3, "subscribe", {"channel": "dialog:#43,44"})
        assert denied["error"]["code"] == 103


async def test_client_publish_presence_history(protocol_server: ServerProcess) -> None:
    """T3, T4, T5."""
    ch = channel()
    async with await RawClient.open(protocol_server.ws_url) as c:
        client_id = (await c.connect(token()))["connect"]["client"]
        await c.call(2, "subscribe", {"channel": ch})
        await c.recv()  # own join
        protocol_server.api("publish", {"channel": ch, "data": {"text": "hello"}})
        await c.recv()
        await c.send({"publish": {"channel": ch, "data": {"text": "hi"}}, "id": 3})
        messages = [await c.recv(), await c.recv()]
        assert {"id": 3, "publish": {}} in messages
        info = {"user": "42", "client": client_id}
        assert {
            "push": {"channel": ch, "pub": {"data": {"text": "hi"}, "info": info, "offset": 2}}
        } in messages
        presence = await c.call(4, "presence", {"channel": ch})
        assert presence == {"id": 4, "presence": {"presence": {client_id: info}}}
        stats = await c.call(5, "presence_stats", {"channel": ch})
        assert stats == {"id": 5, "presence_stats": {"num_clients": 1, "num_users": 1}}
        history = await c.call(6, "history", {"channel": ch, "limit": 10})
        epoch = history["history"]["epoch"]
        assert history == {
            "id": 6,
            "history": {
                "publications": [
                    {"data": {"text": "hello"}, "offset": 1},
                    {"data": {"text": "hi"}, "info": info, "offset": 2},
                ],
                "epoch": epoch,
                "offset": 2,
            },
        }
        position = await c.call(7, "history", {"channel": ch, "limit": 0, "reverse": False})
        assert position["history"] == {"publications": [], "epoch": epoch, "offset": 2}
        since = await c.call(
            8, "history", {"channel": ch, "since": {"offset": 1, "epoch": epoch}, "limit": 10}
        )
        assert [p["offset"] for p in since["history"]["publications"]] == [2]
        wrong = await c.call(
            9, "history", {"channel": ch, "limit": 10, "since": {"offset": 1, "epoch": "WRONGEPO"}}
        )
        assert wrong["error"] == {"code": 112, "message": "unrecoverable position"}
        rev = await c.call(10, "history", {"channel": ch, "limit": 10, "reverse": True})
        assert [p["offset"] for p in rev["history"]["publications"]] == [2, 1]


async def test_publish_not_subscribed_denied(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        reply = await c.call(2, "publish", {"channel": channel(), "data": {}})
        assert reply["error"] == {"code": 103, "message": "permission denied"}


async def test_presence_not_available_in_namespace(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        reply = await c.call(2, "presence", {"channel": "plain:room"})
        assert reply["error"] == {"code": 108, "message": "not available"}
        history = await c.call(3, "history", {"channel": "plain:room"})
        assert history["error"]["code"] == 108


async def test_recovery_after_reconnect(protocol_server: ServerProcess) -> None:
    """T6: missed publications come back inside the subscribe reply."""
    ch = channel()
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        sub = (await c.call(2, "subscribe", {"channel": ch, "flag": 1}))["subscribe"]
        epoch = sub["epoch"]
    for n in (1, 2, 3):
        protocol_server.api("publish", {"channel": ch, "data": {"n": n}})
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.send(
            {"connect": {"token": token(), "name": "js"}, "id": 10},
            {
                "subscribe": {
                    "channel": ch,
                    "flag": 1,
                    "recover": True,
                    "offset": 1,
                    "epoch": epoch,
                },
                "id": 11,
            },
        )
        await c.reply(10)
        reply = (await c.reply(11))["subscribe"]
        assert reply == {
            "recoverable": True,
            "epoch": epoch,
            "publications": [{"data": {"n": 2}, "offset": 2}, {"data": {"n": 3}, "offset": 3}],
            "recovered": True,
            "offset": 1,
            "positioned": True,
            "was_recovering": True,
        }
        nothing = await c.call(12, "unsubscribe", {"channel": ch})
        assert nothing == {"id": 12, "unsubscribe": {}}
        same = (
            await c.call(
                13, "subscribe", {"channel": ch, "recover": True, "offset": 3, "epoch": epoch}
            )
        )["subscribe"]
        assert same["recovered"] is True and "publications" not in same and same["offset"] == 3


async def test_recovery_with_wrong_epoch(protocol_server: ServerProcess) -> None:
    ch = channel()
    protocol_server.api("publish", {"channel": ch, "data": {"n": 1}})
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        reply = (
            await c.call(
                2, "subscribe", {"channel": ch, "recover": True, "offset": 1, "epoch": "XXXXXXXX"}
            )
        )["subscribe"]
        assert "recovered" not in reply and "publications" not in reply
        assert reply["offset"] == 1 and reply["was_recovering"] is True
        rejected = await c.call(
            3,
            "subscribe",
            {"channel": channel(), "recover": True, "offset": 5, "epoch": "XXXXXXXX", "flag": 3},
        )
        assert rejected["error"] == {"code": 112, "message": "unrecoverable position"}


async def test_refresh(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token(ttl=60))
        reply = await c.call(2, "refresh", {"token": token(ttl=900)})
        assert reply["refresh"]["expires"] is True
        assert 895 <= reply["refresh"]["ttl"] <= 900
        await c.send({"id": 3, "refresh": {"token": token(user="other")}})
        assert await c.closed() == 3500


async def test_rpc_without_handler_not_available(protocol_server: ServerProcess) -> None:
    """No RPC handler at all: 108, as Centrifugo without an RPC proxy (104 needs a handler)."""
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        reply = await c.call(2, "rpc", {"method": "anything", "data": {}})
        assert reply["error"] == {"code": 108, "message": "not available"}
        # An error reply, not a disconnect: the connection goes on.
        assert (await c.call(3, "rpc", {"method": ""}))["error"]["code"] == 108


async def test_unknown_method_gets_error_reply(protocol_server: ServerProcess) -> None:
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        reply = await c.call(2, "teleport", {})
        assert reply["error"]["code"] == 107


async def test_server_side_subscription_from_token(protocol_server: ServerProcess) -> None:
    ch = channel()
    async with await RawClient.open(protocol_server.ws_url) as c:
        result = (await c.connect(token(channels=[ch])))["connect"]
        assert result["subs"][ch]["recoverable"] is True
        assert "join" in (await c.recv())["push"]
        protocol_server.api("publish", {"channel": ch, "data": {"x": 1}})
        assert (await c.recv())["push"]["pub"]["data"] == {"x": 1}


async def test_server_api_subscribe_unsubscribe_disconnect(protocol_server: ServerProcess) -> None:
    user = uuid.uuid4().hex[:8]
    ch = channel()
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token(user))
        assert protocol_server.api("subscribe", {"user": user, "channel": ch}) == {"result": {}}
        push = await c.recv()
        assert push["push"]["channel"] == ch and push["push"]["subscribe"]["recoverable"] is True
        protocol_server.api("unsubscribe", {"user": user, "channel": ch})
        while "unsubscribe" not in (push := await c.recv())["push"]:
            pass
        assert push["push"]["unsubscribe"] == {"code": 2000, "reason": "server unsubscribe"}
        protocol_server.api(
            "disconnect", {"user": user, "disconnect": {"code": 4000, "reason": "custom"}}
        )
        assert await c.closed() == 4000


async def test_pings_are_sent_and_missing_pong_disconnects(server_factory) -> None:  # type: ignore[no-untyped-def]
    config = {**PROTOCOL_CONFIG, "client": {"ping_interval": "2s", "pong_timeout": "1s"}}
    server = server_factory(config)
    async with await RawClient.open(server.ws_url) as c:
        result = (await c.connect(token()))["connect"]
        assert result["ping"] == 2
        # Answer pings for a while: the connection stays up.
        for _ in range(2):
            assert await c.recv(timeout=4, skip_pings=False) == {}
            await c.ws.send_str("{}")
        # Stop answering: closed with 3012.
        with pytest.raises(Closed) as closed:
            while True:
                await c.recv(timeout=6, skip_pings=True)
        assert closed.value.code == 3012


async def test_stale_connection_closed(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory({"client": {"stale_close_delay": "1s"}})
    async with await RawClient.open(server.ws_url) as c:
        assert await c.closed(timeout=5) == 3502


async def test_connection_expiry_closes_3005(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory({"client": {"expired_close_delay": "0s"}})
    async with await RawClient.open(server.ws_url) as c:
        await c.connect(token(ttl=2))
        assert await c.closed(timeout=6) == 3005


async def test_many_commands_in_one_frame_get_one_write(protocol_server: ServerProcess) -> None:
    ch = channel()
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        await c.call(2, "subscribe", {"channel": ch})
        await c.recv()
        c.frames.clear()
        await c.send(*[{"id": 10 + i, "presence_stats": {"channel": ch}} for i in range(20)])
        replies = [await c.recv() for _ in range(20)]
        assert [r["id"] for r in replies] == list(range(10, 30))
        assert len(c.frames) < 20  # coalesced


def test_secret_is_long_enough() -> None:
    assert len(SECRET) >= 32


async def test_concurrent_clients_isolated(protocol_server: ServerProcess) -> None:
    """A client that misbehaves is closed; a well-behaved one is unaffected."""
    ch = channel()
    async with (
        await RawClient.open(protocol_server.ws_url) as good,
        await RawClient.open(protocol_server.ws_url) as bad,
    ):
        await good.connect(token())
        await good.call(2, "subscribe", {"channel": ch})
        await good.recv()
        await bad.connect(token())
        await bad.ws.send_str("{not json")
        assert await bad.closed() == 3501
        protocol_server.api("publish", {"channel": ch, "data": {"still": "here"}})
        assert (await asyncio.wait_for(good.recv(), 5))["push"]["pub"]["data"] == {"still": "here"}


async def test_anonymous_connect_when_enabled(server_factory) -> None:  # type: ignore[no-untyped-def]
    config = {**PROTOCOL_CONFIG, "client": {"allow_anonymous_connect_without_token": True}}
    server = server_factory(config)
    async with await RawClient.open(server.ws_url) as c:
        assert "connect" in await c.connect(None)
        denied = await c.call(2, "subscribe", {"channel": "plain:room"})
        assert denied["error"]["code"] == 103  # plain: clients only, not anonymous
        assert await c.call(3, "subscribe", {"channel": "open:room"}) == {"id": 3, "subscribe": {}}


async def test_sub_refresh_and_subscription_expiry(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory({**PROTOCOL_CONFIG, "client": {"expired_sub_close_delay": "0s"}})
    async with await RawClient.open(server.ws_url) as c:
        await c.connect(token())
        sub = await c.call(
            2, "subscribe", {"channel": "$secret:a", "token": token(channel="$secret:a", ttl=2)}
        )
        assert sub["subscribe"]["expires"] is True
        refreshed = await c.call(
            3, "sub_refresh", {"channel": "$secret:a", "token": token(channel="$secret:a", ttl=600)}
        )
        assert 595 <= refreshed["sub_refresh"]["ttl"] <= 600
        wrong = await c.call(4, "sub_refresh", {"channel": "$secret:none", "token": "x"})
        assert wrong["error"]["code"] == 103
        await c.call(
            5, "subscribe", {"channel": "$secret:b", "token": token(channel="$secret:b", ttl=1)}
        )
        push = await c.recv(timeout=5)
        assert push == {
            "push": {
                "channel": "$secret:b",
                "unsubscribe": {"code": 2501, "reason": "subscription expired"},
            }
        }


async def test_token_in_query_string_not_logged(protocol_server: ServerProcess) -> None:
    secret_token = token("logcheck")
    async with await RawClient.open(f"{protocol_server.ws_url}?token={secret_token}") as c:
        await c.connect(secret_token)
    protocol_server.api("info", {})  # the access log line of the upgrade is written by now
    assert secret_token not in protocol_server.log()


async def test_delta_negotiation(protocol_server: ServerProcess) -> None:
    """``delta: "fossil"`` is confirmed only where the namespace allows it; an unknown
    delta type is a bad request (3501), as in Centrifugo."""
    async with await RawClient.open(protocol_server.ws_url) as c:
        await c.connect(token())
        allowed = await c.call(2, "subscribe", {"channel": channel("delta:"), "delta": "fossil"})
        assert allowed["subscribe"]["delta"] is True
        plain = await c.call(3, "subscribe", {"channel": channel(), "delta": "fossil"})
        assert "delta" not in plain["subscribe"]
        await c.send({"id": 99, "subscribe": {"channel": channel("delta:"), "delta": "zstd"}})
        assert await c.closed() == 3501


async def test_protobuf_connection_frames(protocol_server: ServerProcess) -> None:
    """centrifuge-protobuf alone makes the connection binary: a ping is an empty Reply,
    a text frame there is the wrong encoding (3506), malformed Protobuf a bad request (3501)."""
    import aiohttp

    from roomcast import protobuf

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            protocol_server.ws_url, protocols=("centrifuge-protobuf",)
        ) as ws:
            assert ws.protocol == "centrifuge-protobuf"
            connect = protobuf.encode_message("Command", {"id": 1, "connect": {"token": token()}})
            await ws.send_bytes(protobuf._varint(len(connect)) + connect)
            reply = await ws.receive_bytes(timeout=5)
            length, start = protobuf._read_varint(reply, 0)
            decoded = protobuf.decode_message("Reply", reply[start : start + length])
            assert decoded["id"] == 1 and decoded["connect"]["client"]
            await ws.send_str('{"id": 2, "presence": {"channel": "x"}}')
            assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 3506
        async with session.ws_connect(
            protocol_server.ws_url, protocols=("centrifuge-protobuf",)
        ) as ws:
            await ws.send_bytes(b"\x05\x08")  # a length past the end of the frame
            assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 3501
