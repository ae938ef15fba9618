#!/usr/bin/env python3
"""The Pusher HTTP API and webhooks with Pusher's own Python server SDK (`pusher`),
against a running pushgate node (tests/pusher/sdk.sh starts it on free ports).
Python `websockets` plays the browser's part on /app/{key} (protocol 7).

  1. trigger reaches a subscriber with the data as sent; socket_id excludes its sender
  2. trigger_batch: every event reaches its channel
  3. channels_info / channel_info: occupied channels, subscription and user counts
  4. users_info: the users of a presence channel (subscribed with the SDK's signature)
  5. terminate_user_connections closes a signed-in user's connection (4009)
  6. webhooks: channel_occupied, member_added, channel_vacated, member_removed,
     client_event, each accepted by the SDK's validate_webhook
  7. bad input: wrong secret, stale timestamp, body_md5 mismatch, unknown app,
     data over the limit, each refused with Pusher's status

Prints one line per check and "N passed, M failed"; exits 1 on a failure.
No sleeps: every wait is for a condition, with a deadline.
"""
import argparse
import asyncio
import hashlib
import http.server
import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pusher
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus
from pusher.signature import sign
import websockets

WAIT = 10
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(f"{'ok' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}", flush=True)


class Hooks:
    """The webhook receiver: every POST's headers and raw body, in arrival order."""

    def __init__(self, port):
        self.got = queue.Queue()
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # Header names are case-insensitive (hyper sends them lower-cased).
                headers = {k.lower(): v for k, v in self.headers.items()}
                hooks.got.put((self.path, headers, body.decode()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.events = []  # (event, validated) in arrival order

    def wait_for(self, client, pred):
        """The first webhook event matching pred (waiting for more POSTs until the
        deadline); each POST is validated with the SDK's validate_webhook."""
        deadline = time.monotonic() + WAIT
        while True:
            for e, valid in self.events:
                if pred(e):
                    return e, valid
            left = deadline - time.monotonic()
            if left <= 0:
                return None, False
            try:
                path, headers, body = self.got.get(timeout=left)
            except queue.Empty:
                return None, False
            validated = client.validate_webhook(
                key=headers.get("x-pusher-key", ""),
                signature=headers.get("x-pusher-signature", ""),
                body=body)
            ok = validated is not None and path == "/pusher/webhooks"
            for e in json.loads(body)["events"]:
                self.events.append((e, ok))


class Socket:
    """One Pusher WebSocket connection, as pusher-js opens it."""

    @classmethod
    async def open(cls, ws_port, key):
        self = cls()
        self.ws = await websockets.connect(f"ws://127.0.0.1:{ws_port}/app/{key}?protocol=7&client=python&version=1")
        first = await self.next()
        assert first["event"] == "pusher:connection_established", first
        self.socket_id = json.loads(first["data"])["socket_id"]
        return self

    async def next(self):
        return json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))

    async def next_event(self, event):
        """The next message named `event`, skipping pings and others."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            m = await self.next()
            if m.get("event") == event:
                return m
        raise TimeoutError(event)

    async def send(self, event, data, channel=None):
        m = {"event": event, "data": data}
        if channel:
            m["channel"] = channel
        await self.ws.send(json.dumps(m))

    async def subscribe(self, channel, auth=None):
        data = {"channel": channel}
        if auth:
            data.update(auth)
        await self.send("pusher:subscribe", data)
        return await self.next_event("pusher_internal:subscription_succeeded")

    async def close(self):
        await self.ws.close()


def signed_url(args, method, path, params, body=b"", secret=None, ts=None, md5_of=None):
    """A URL signed by hand (for what the SDK never sends wrong on purpose)."""
    q = dict(params)
    q.update({"auth_key": args.key, "auth_timestamp": str(ts if ts is not None else int(time.time())),
              "auth_version": "1.0"})
    if body or md5_of is not None:
        q["body_md5"] = hashlib.md5(md5_of if md5_of is not None else body).hexdigest()
    to_sign = "&".join(f"{k}={v}" for k, v in sorted(q.items()))
    q["auth_signature"] = sign(secret or args.secret, f"{method}\n{path}\n{to_sign}")
    return f"http://127.0.0.1:{args.http}{path}?{urllib.parse.urlencode(q)}"


def raw(method, url, body=b""):
    req = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def refused(fn, exc, text=""):
    try:
        fn()
    except exc as e:
        return text in str(e), str(e)
    except Exception as e:  # noqa: BLE001 - the wrong kind of refusal is a failure
        return False, f"{type(e).__name__}: {e}"
    return False, "accepted"


async def run(args):
    client = pusher.Pusher(app_id=args.app_id, key=args.key, secret=args.secret,
                           host="127.0.0.1", port=args.http, ssl=False)
    hooks = Hooks(args.hook)

    # 1. trigger, and socket_id excluding the sender.
    a = await Socket.open(args.ws, args.key)
    b = await Socket.open(args.ws, args.key)
    await a.subscribe("news")
    await b.subscribe("news")
    reply = client.trigger("news", "greeting", {"text": "hello"})
    check("trigger answers {}", reply == {}, reply)
    got = await a.next_event("greeting")
    check("trigger reaches a subscriber with the data as sent",
          got.get("channel") == "news" and json.loads(got["data"]) == {"text": "hello"}, got)
    await b.next_event("greeting")
    client.trigger(["news"], "from-a", "a's own", socket_id=a.socket_id)
    client.trigger("news", "after", "x")
    got_b = await b.next_event("from-a")
    first_a = await a.next()
    while first_a.get("event", "").startswith("pusher:"):
        first_a = await a.next()
    check("socket_id: the others get it, the sender does not",
          got_b["data"] == "a's own" and first_a.get("event") == "after", first_a)

    # 2. trigger_batch.
    c = await Socket.open(args.ws, args.key)
    await c.subscribe("sports")
    reply = client.trigger_batch([
        {"channel": "news", "name": "batch-1", "data": "one"},
        {"channel": "sports", "name": "batch-2", "data": {"n": 2}},
    ])
    check("trigger_batch answers {}", reply == {}, reply)
    e1 = await a.next_event("batch-1")
    e2 = await c.next_event("batch-2")
    check("trigger_batch: each event on its channel",
          e1["data"] == "one" and json.loads(e2["data"]) == {"n": 2}, (e1, e2))

    # 3/4. channel info, presence users (subscribed with the SDK's own signature).
    p = await Socket.open(args.ws, args.key)
    member = {"user_id": "alice", "user_info": {"name": "Alice"}}
    auth = client.authenticate(channel="presence-room", socket_id=p.socket_id, custom_data=member)
    ok = await p.subscribe("presence-room", auth)
    check("presence subscribe with the SDK's authenticate", "alice" in ok.get("data", ""), ok)

    info = client.channels_info()
    names = set(info.get("channels", {}))
    check("channels_info lists the occupied channels",
          {"news", "sports", "presence-room"} <= names, info)
    info = client.channels_info(prefix_filter="presence-", attributes=["user_count"])
    check("channels_info with filter_by_prefix and user_count",
          info == {"channels": {"presence-room": {"user_count": 1}}}, info)
    info = client.channel_info("news", attributes=["subscription_count"])
    check("channel_info: occupied, subscription_count", info == {"occupied": True, "subscription_count": 2}, info)
    info = client.channel_info("presence-room", attributes=["user_count", "subscription_count"])
    check("channel_info of a presence channel: user_count",
          info == {"occupied": True, "user_count": 1, "subscription_count": 1}, info)
    info = client.channel_info("nobody-here")
    check("channel_info of a vacant channel", info == {"occupied": False}, info)
    users = client.users_info("presence-room")
    check("users_info lists the members", users == {"users": [{"id": "alice"}]}, users)
    ok_, detail = refused(lambda: client.users_info("news"), PusherBadRequest)
    check("users_info of a non-presence channel: 400", ok_, detail)

    # 5. terminate_user_connections.
    t = await Socket.open(args.ws, args.key)
    signin = client.authenticate_user(t.socket_id, {"id": "bob"})
    await t.send("pusher:signin", signin)
    await t.next_event("pusher:signin_success")
    reply = client.terminate_user_connections("bob")
    check("terminate_user_connections answers {}", reply == {}, reply)
    try:
        while True:
            await t.next()
    except websockets.ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        check("the user's connection is closed with 4009", code == 4009, code)
    except Exception as e:  # noqa: BLE001
        check("the user's connection is closed with 4009", False, repr(e))

    # 6. webhooks, validated by the SDK.
    def hook(name, channel, **more):
        e, valid = hooks.wait_for(client, lambda e: e.get("name") == name and e.get("channel") == channel
                                  and all(e.get(k) == v for k, v in more.items()))
        check(f"webhook {name} {channel} arrives and validate_webhook accepts it", e is not None and valid, e)

    hook("channel_occupied", "news")
    hook("member_added", "presence-room", user_id="alice")
    w = await Socket.open(args.ws, args.key)
    private_auth = client.authenticate(channel="private-chat", socket_id=w.socket_id)
    await w.subscribe("private-chat", private_auth)
    await w.send("client-typing", {"who": "w"}, channel="private-chat")
    hook("client_event", "private-chat", event="client-typing")
    await c.close()
    hook("channel_vacated", "sports")
    await p.close()
    hook("member_removed", "presence-room", user_id="alice")

    # 7. refusals.
    wrong = pusher.Pusher(app_id=args.app_id, key=args.key, secret="not-the-secret",
                          host="127.0.0.1", port=args.http, ssl=False)
    ok_, detail = refused(lambda: wrong.trigger("news", "e", "x"), PusherBadAuth, "Invalid signature")
    check("wrong secret: 401", ok_, detail)
    unknown = pusher.Pusher(app_id="999", key=args.key, secret=args.secret,
                            host="127.0.0.1", port=args.http, ssl=False)
    ok_, detail = refused(lambda: unknown.trigger("news", "e", "x"), PusherBadStatus, "404")
    check("unknown app: 404", ok_, detail)
    other_key = pusher.Pusher(app_id=args.app_id, key="no-such-key", secret=args.secret,
                              host="127.0.0.1", port=args.http, ssl=False)
    ok_, detail = refused(lambda: other_key.trigger("news", "e", "x"), PusherBadAuth, "auth_key")
    check("unknown auth_key: 401", ok_, detail)
    path = f"/apps/{args.app_id}/events"
    body = json.dumps({"name": "e", "channel": "news", "data": "x"}).encode()
    status, text = raw("POST", signed_url(args, "POST", path, {}, body, ts=int(time.time()) - 601), body)
    check("stale timestamp (601 s): 401", status == 401 and "Timestamp expired" in text, (status, text))
    status, text = raw("POST", signed_url(args, "POST", path, {}, body, ts=int(time.time()) + 601), body)
    check("future timestamp (601 s): 401", status == 401, (status, text))
    other = json.dumps({"name": "e", "channel": "news", "data": "forged"}).encode()
    status, text = raw("POST", signed_url(args, "POST", path, {}, body, md5_of=body), other)
    check("body_md5 mismatch: 401", status == 401 and "body_md5" in text, (status, text))
    status, text = raw("POST", signed_url(args, "POST", path, {}, b"", secret=args.secret), body)
    check("a body without body_md5: 401", status == 401, (status, text))
    big = json.dumps({"name": "e", "channel": "news", "data": "x" * (1024 * 1024)}).encode()
    status, text = raw("POST", signed_url(args, "POST", path, {}, big), big)
    check("data over the limit: 413", status == 413, (status, text[:200]))
    bad = json.dumps({"name": "e", "channel": "no spaces", "data": "x"}).encode()
    status, text = raw("POST", signed_url(args, "POST", path, {}, bad), bad)
    check("invalid channel name: 400", status == 400, (status, text))
    status, text = raw("GET", signed_url(args, "GET", f"/apps/{args.app_id}/channels", {"info": "user_count"}))
    check("user_count without filter_by_prefix=presence-: 400", status == 400, (status, text))

    for s in (a, b, t, w):
        try:
            await s.close()
        except Exception:  # noqa: BLE001 - already closed by the server
            pass
    hooks.server.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", type=int, required=True)
    ap.add_argument("--http", type=int, required=True)
    ap.add_argument("--hook", type=int, required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret", required=True)
    args = ap.parse_args()
    try:
        asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001 - a crash is a failed check, with its cause
        check("the run completed", False, repr(e))
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    raise SystemExit(0 if passed == len(RESULTS) and RESULTS else 1)


if __name__ == "__main__":
    main()
