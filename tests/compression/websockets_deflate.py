#!/usr/bin/env python3
"""permessage-deflate with Python `websockets` (an independent RFC 7692 implementation)
against the real pushgate binary, run by tests/compression/run.sh.

  1. compression = "on": websockets' default offer is accepted with both
     no_context_takeover parameters; a 2 KB JSON publication arrives intact and is
     counted once in pushgate_compressed_frames_total; a client that offers nothing
     gets the same publication plain
  2. a compressed subscribe command (websockets compresses what it sends) is answered
  3. a zip bomb (16 MB of one byte, compressed to ~16 KB) closes with 1009
  4. compression = "off" (a second node): the offer is declined, the connection
     works uncompressed

Prints one line per check and "N passed, M failed"; exits 1 on a failure.
"""
import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'ok' if ok else 'FAIL'} {name}{'' if ok else ': ' + str(detail)}")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def metric(http, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def publish(http, query, body):
    req = urllib.request.Request(f"http://127.0.0.1:{http}/publish?{query}", data=body.encode(), method="POST")
    return json.loads(urllib.request.urlopen(req, timeout=5).read())


class Node:
    """One pushgate process on free ports, stopped by its pid."""

    def __init__(self, binary, settings):
        self.ws, self.http, grpc = free_ports(3)
        self.log = tempfile.NamedTemporaryFile(prefix="pushgate-deflate-", suffix=".log", delete=False)
        argv = [binary, "serve", "--ws-addr", f"127.0.0.1:{self.ws}", "--http-addr", f"127.0.0.1:{self.http}",
                "--set", f"grpc_addr=127.0.0.1:{grpc}"]
        for k, v in settings.items():
            argv += ["--set", f"{k}={v}"]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http}/livez", timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pushgate did not start (log: {self.log.name})")
                time.sleep(0.05)
        self.url = f"ws://127.0.0.1:{self.ws}/ws"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def quotes(seed):
    rows, i = [], 0
    while len(json.dumps(rows)) < 2000:
        rows.append({"sym": f"S{(seed + i) % 97}", "bid": 100 + i / 8, "ask": 100.25 + i / 8, "ts": 1700000000000 + i})
        i += 1
    return json.dumps(rows)


async def connected(ws):
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first["type"] == "connected", first


async def on(node):
    async with websockets.connect(node.url, max_size=None) as z, \
            websockets.connect(node.url, compression=None, max_size=None) as plain:
        await connected(z)
        await connected(plain)
        ext = z.response.headers.get("Sec-WebSocket-Extensions", "")
        check("websockets' offer accepted with no context takeover both ways",
              ext.startswith("permessage-deflate") and "server_no_context_takeover" in ext
              and "client_no_context_takeover" in ext, ext)
        check("no offer, no extension", "Sec-WebSocket-Extensions" not in plain.response.headers,
              plain.response.headers)
        frames0 = metric(node.http, "pushgate_compressed_frames_total")
        data = quotes(1)
        reply = publish(node.http, "all=true", data)
        check("the publication is enqueued to both", reply.get("enqueued") == 2, reply)
        got_z = json.loads(await asyncio.wait_for(z.recv(), 5))
        got_plain = json.loads(await asyncio.wait_for(plain.recv(), 5))
        check("the compressed client gets it intact", got_z.get("data") == data, got_z)
        check("the plain client gets it intact", got_plain.get("data") == data, got_plain)
        frames = metric(node.http, "pushgate_compressed_frames_total") - frames0
        check("compressed once", frames == 1, frames)

        # websockets compresses what it sends: a subscribe padded past any threshold.
        await z.send(json.dumps({"type": "subscribe", "channels": ["py"], "id": 3}) + " " * 3000)
        sub = json.loads(await asyncio.wait_for(z.recv(), 5))
        check("a compressed command is answered", sub.get("type") == "subscribed" and sub.get("id") == 3, sub)

    async with websockets.connect(node.url, max_size=None) as bomb:
        await connected(bomb)
        await bomb.send("0" * (16 << 20))
        try:
            await asyncio.wait_for(bomb.recv(), 10)
            code = None
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        check("a zip bomb closes with 1009", code == 1009, code)

    # An offer asking for a 256-byte window: granted, and a 2 KB publication (too
    # long for that window) still arrives intact, uncompressed.
    small = ClientPerMessageDeflateFactory(server_max_window_bits=8)
    async with websockets.connect(node.url, extensions=[small], compression=None) as w8:
        await connected(w8)
        ext = w8.response.headers.get("Sec-WebSocket-Extensions", "")
        check("server_max_window_bits=8 granted", "server_max_window_bits=8" in ext, ext)
        data = quotes(2)
        publish(node.http, "all=true", data)
        got = json.loads(await asyncio.wait_for(w8.recv(), 5))
        check("the 8-bit-window client gets it intact", got.get("data") == data, got)


async def off(node):
    async with websockets.connect(node.url) as ws:
        await connected(ws)
        check("compression off: the offer is declined",
              "Sec-WebSocket-Extensions" not in ws.response.headers, ws.response.headers)
        data = quotes(3)
        publish(node.http, "all=true", data)
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        check("compression off: the publication arrives", got.get("data") == data, got)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="the pushgate binary")
    args = p.parse_args()
    quiet = {"heartbeat_interval_ms": 600000, "heartbeat_timeout_ms": 1200000}
    for settings, scenario in [({"compression": "on", **quiet}, on), (quiet, off)]:
        node = Node(args.bin, settings)
        try:
            asyncio.run(scenario(node))
        except Exception as e:  # a crash of the scenario is a failed check, not a traceback
            check(f"{scenario.__name__}: ran to the end", False, repr(e))
        finally:
            node.stop()
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not RESULTS else 0)


if __name__ == "__main__":
    main()
