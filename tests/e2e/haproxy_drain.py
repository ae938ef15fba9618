#!/usr/bin/env python3
"""End-to-end: haproxy (the real one) in front of two pushgate nodes joined through Redis.

Run by tests/e2e/haproxy_drain.sh, which installs haproxy and redis-server, builds the
binary and starts a redis-server of its own (--redis-port, no persistence).
Standard library only: a minimal WebSocket client (RFC 6455) on asyncio.

  1. start node 1 and node 2 with broker=redis on that Redis, and haproxy (loopback
     variant of deploy/haproxy/haproxy.cfg)
  2. N clients connect through haproxy and subscribe to one channel; both nodes get
     some; Redis shows both nodes following the channel (PUBSUB SHARDNUMSUB)
  3. publish ?all=true to each node's internal API: every client, on either node,
     gets each publication exactly once
  4. publish ?channel= to node 1 only: nodes_accepted == 2, node 2's clients get it exactly once
  5. SIGTERM node 1: it turns unready, closes its clients with 1001, exits 0;
     they reconnect through haproxy to node 2 and subscribe again; haproxy marks
     node 1 DOWN; only node 2 follows the channel in Redis
  6. publish ?all=true and ?channel= to node 2: all N clients get each exactly once
Exactly once is proven without sleeping: after a publication, a sentinel goes through
every live node (deliveries are in order, so a duplicate would have arrived before it)
and each node must have recognised every one of its own bus messages that Redis
echoed back (pushgate_broker_echoes_total == pushgate_broker_published_total).
Prints one line per check and a final "N passed, M failed"; exits 1 on failure.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

P = argparse.ArgumentParser()
P.add_argument("--bin", required=True)
P.add_argument("--haproxy", default="haproxy")
P.add_argument("--cfg-template", required=True)
P.add_argument("--lib", required=True, help="deploy/lib.sh (render_haproxy_cfg)")
P.add_argument("--healthcheck", required=True, help="deploy/healthcheck.sh")
P.add_argument("--tmp", required=True)
P.add_argument("--clients", type=int, default=20)
P.add_argument("--redis-port", type=int, required=True, help="a running redis-server (7+) on 127.0.0.1")
ARGS = P.parse_args()

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)
    else:
        failed += 1
        print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)
    return ok


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


CHANNEL = "e2e-news"
BUS_KEY = f"pushgate:ch:{{{CHANNEL}}}"  # redis_prefix "pushgate" (the default); the channel is hash-tagged (docs/cluster.md, keys)


async def sentinel(clients, ports):
    """Publishes a marker ?all=true through each live node (its internal API port) and
    waits until every client has every marker. Deliveries are in order on every path a
    publication takes (a node's own deliveries, and each node's subscriber connection
    to Redis), so anything sent before has arrived by then. Then waits until each node
    has recognised every bus message it published coming back from Redis as an echo
    (delivered here already, ignored): an echo delivered again would not be counted.
    Returns "" when settled, else what is missing."""
    marks = []
    for port in ports:
        mark = f"sentinel-{port}-{uuid.uuid4().hex[:8]}"
        status, body = http("POST", port, "/publish?all=true", mark.encode())
        if status != 200:
            return f"sentinel publish to {port}: HTTP {status} {body}"
        marks.append(mark)
    if not await await_for(lambda: all(c.received(m) >= 1 for c in clients for m in marks), 10):
        return "sentinels not received by every client"
    loop = asyncio.get_running_loop()
    for port in ports:
        def settled():
            m = metrics(port)
            return m.get("pushgate_broker_echoes_total", 0) == m.get("pushgate_broker_published_total", -1)
        if not await loop.run_in_executor(None, lambda: wait_for(settled, 10)):
            m = metrics(port)
            return (f"node on {port}: {m.get('pushgate_broker_echoes_total')} echoes of "
                    f"{m.get('pushgate_broker_published_total')} published")
    return ""


def metrics(port):
    """Every unlabelled or labelled series of /metrics: {'name{labels}': value}."""
    status, body = http("GET", port, "/metrics")
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def redis_cmd(*args):
    """One command to the test's Redis (RESP over a socket); returns the raw reply."""
    with socket.create_connection(("127.0.0.1", ARGS.redis_port), timeout=2) as s:
        cmd = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        s.sendall(cmd.encode())
        return s.recv(65536).decode()


def shard_subscribers(key):
    """How many nodes follow a bus key (PUBSUB SHARDNUMSUB): one subscriber connection
    per node."""
    reply = redis_cmd("PUBSUB", "SHARDNUMSUB", key)
    return int(reply.split("\r\n")[-2].lstrip(":"))


def http(method, port, path, body=b"", timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body if method == "POST" else None,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(interval)
    return False


async def await_for(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(interval)
    return pred()


def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- a minimal WebSocket client ---------------------------------------------------
class WS:
    """One WebSocket connection: records text messages and the close code."""

    def __init__(self):
        self.messages = []
        self.close_code = None
        self.closed = asyncio.Event()

    async def connect(self, port, path="/ws", timeout=5):
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise ConnectionError(f"upgrade refused: {lines[0]}")
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise ConnectionError("bad Sec-WebSocket-Accept")
        self.task = asyncio.ensure_future(self._read_loop())

    def _send(self, opcode, payload=b""):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        try:
            self.writer.write(head + mask + body)
        except Exception:  # noqa: BLE001 - the peer is gone
            pass

    async def _read_loop(self):
        buf, buf_op = b"", None
        try:
            while True:
                b0, b1 = await self.reader.readexactly(2)
                fin, op, masked, n = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
                if masked:
                    raise ConnectionError("server frame is masked")
                if n == 126:
                    n = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                payload = await self.reader.readexactly(n)
                if op == 0x8:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self._send(0x8, payload[:2])
                    break
                if op == 0x9:
                    self._send(0xA, payload)
                    continue
                if op == 0xA:
                    continue
                if op in (0x1, 0x2):
                    buf, buf_op = payload, op
                elif op == 0x0:
                    buf += payload
                if fin and buf_op is not None:
                    if buf_op == 0x1:
                        self.messages.append(json.loads(buf.decode()))
                    buf, buf_op = b"", None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                pass

    def send_json(self, obj):
        self._send(0x1, json.dumps(obj).encode())

    async def close(self):
        if not self.closed.is_set():
            self._send(0x8, struct.pack("!H", 1000))
            try:
                await asyncio.wait_for(self.closed.wait(), 2)
            except asyncio.TimeoutError:
                self.writer.close()


class Client:
    """A logical client: reconnects through the load balancer after a 1001."""

    def __init__(self, lb_port, channels=()):
        self.lb = lb_port
        self.channels = list(channels)
        self.sessions = []  # every WS, in order
        self.reconnect_errors = 0
        self.stop = False

    @property
    def ws(self):
        return self.sessions[-1]

    @property
    def conn_id(self):
        m = [x for x in self.ws.messages if x.get("type") == "connected"]
        return m[0]["conn"] if m else None

    def received(self, data):
        return sum(1 for s in self.sessions for x in s.messages if x.get("type") == "pub" and x.get("data") == data)

    async def open(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            ws = WS()
            try:
                await ws.connect(self.lb)
                ok = await await_for(lambda: any(x.get("type") == "connected" for x in ws.messages), 5)
                if ok and self.channels:
                    # Each session subscribes again (a reconnect starts with none);
                    # the node answers once the subscription is in place.
                    ws.send_json({"type": "subscribe", "channels": self.channels})
                    ok = await await_for(lambda: any(x.get("type") == "subscribed" for x in ws.messages), 5)
                if ok:
                    self.sessions.append(ws)
                    return
                await ws.close()
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            self.reconnect_errors += 1
            if time.monotonic() > deadline:
                raise TimeoutError("could not connect through haproxy")
            await asyncio.sleep(0.1)

    async def run_reconnects(self):
        """After a close 1001 (going away), reconnect at once, as clients should."""
        while not self.stop:
            await self.ws.closed.wait()
            if self.stop or self.ws.close_code != 1001:
                return
            await self.open()


def node_of(conn_id):
    return conn_id.rsplit("-", 1)[0] if conn_id else None


def haproxy_status(stats_port):
    status, body = http("GET", stats_port, "/stats;csv")
    lines = body.splitlines()
    cols = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        f = line.split(",")
        if len(f) >= len(cols) and f[0] == "pushgate" and f[1].startswith("pushgate"):
            out[f[1]] = f[cols.index("status")]
    return out


async def main():
    n = ARGS.clients
    tmp = ARGS.tmp
    ws1, h1, ws2, h2, lb, stats = free_ports(6)
    procs = {}
    pidfile = os.path.join(tmp, "pids")

    def spawn(name, argv):
        log = open(os.path.join(tmp, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs[name] = p
        with open(pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    # Drain quickly in the test: 1001 closes spread over 2 s, the whole shutdown
    # bounded to 6 s. Shards: 2 each (the machine has 2 cores).
    # Ambient PUSHGATE_* variables would be read as settings: keep them out.
    for k in [k for k in os.environ if k.startswith("PUSHGATE_")]:
        del os.environ[k]
    # Every other listener a node has (e.g. the gRPC ingress, grpc_addr, default
    # 127.0.0.1:50051) gets a free port too, so two nodes and anything already
    # running on this machine do not collide.
    printed = subprocess.run([ARGS.bin, "config", "print"], capture_output=True, text=True, check=True).stdout
    other_addrs = [l.split("=")[0].strip() for l in printed.splitlines()
                   if l.split("=")[0].strip().endswith("_addr") and l.split("=")[0].strip() not in ("ws_addr", "http_addr")]

    # Both nodes join the cluster through the test's own Redis.
    redis_url = f"redis://127.0.0.1:{ARGS.redis_port}"
    ok = wait_for(lambda: redis_cmd("PING").startswith("+PONG"), 10)
    check("redis-server answers PING (no persistence)", ok, redis_url)
    if not ok:
        return

    def node(name, node_id, ws, h):
        extra = []
        for field, port in zip(other_addrs, free_ports(len(other_addrs))):
            extra += ["--set", f"{field}=127.0.0.1:{port}"]
        return spawn(name, [ARGS.bin, "serve", "--ws-addr", f"127.0.0.1:{ws}", "--http-addr", f"127.0.0.1:{h}",
                            "--node-id", node_id, "--shards", "2",
                            "--set", "broker=redis", "--set", f"redis_url={redis_url}",
                            "--set", "drain_window_ms=2000", "--set", "shutdown_grace_ms=6000", *extra])

    n1 = node("node1", "e2e1", ws1, h1)
    node("node2", "e2e2", ws2, h2)
    ok = wait_for(lambda: all(listening(p) for p in (ws1, h1, ws2, h2)), 30)
    check("two pushgate nodes listen", ok, f"node1 ws {ws1} api {h1}, node2 ws {ws2} api {h2}")
    if not ok:
        return
    ok = wait_for(lambda: all(http("GET", h, "/readyz", timeout=1)[0] == 200 for h in (h1, h2)), 15)
    up = [metrics(h).get("pushgate_broker_up") for h in (h1, h2)]
    check("both nodes joined the cluster through Redis (/readyz 200, pushgate_broker_up 1)",
          ok and up == [1.0, 1.0], f"broker=redis, pushgate_broker_up {up}")
    if not ok:
        return

    cfg = os.path.join(tmp, "haproxy.cfg")
    rendered = subprocess.run(["bash", "-c", f'source "{ARGS.lib}" && render_haproxy_cfg "$@"', "render",
                               ARGS.cfg_template, str(lb), str(stats), "4000", str(ws1), str(h1), str(ws2), str(h2)],
                              check=True, capture_output=True, text=True).stdout
    open(cfg, "w").write(rendered)
    maxconn = [l.split()[1] for l in rendered.splitlines() if l.strip().startswith("maxconn")][0]
    spawn("haproxy", [ARGS.haproxy, "-db", "-f", cfg])
    ok = wait_for(lambda: haproxy_status(stats) == {"pushgate1": "UP", "pushgate2": "UP"}, 15)
    check("haproxy runs the rendered deploy/haproxy/haproxy.cfg and sees both nodes UP", ok,
          f"frontend 127.0.0.1:{lb}, global maxconn {maxconn}")
    if not ok:
        return

    # --- connect through haproxy ------------------------------------------------
    clients = [Client(lb, [CHANNEL]) for _ in range(n)]
    # A few at a time, so leastconn spreads them.
    for i in range(0, n, 4):
        await asyncio.gather(*(c.open() for c in clients[i:i + 4]))
    nodes = [node_of(c.conn_id) for c in clients]
    on1 = [c for c in clients if node_of(c.conn_id) == "e2e1"]
    on2 = [c for c in clients if node_of(c.conn_id) == "e2e2"]
    check(f"{n} WebSocket clients connect through haproxy", all(nodes), f"{len(on1)} on node 1, {len(on2)} on node 2")
    check("haproxy spreads clients over both nodes (leastconn)", len(on1) > 0 and len(on2) > 0,
          f"{len(on1)}/{len(on2)}")
    reconnectors = [asyncio.ensure_future(c.run_reconnects()) for c in clients]
    # Each node subscribes to the channel's bus key after its first local subscriber
    # joined, asynchronously: Redis says when both follow it.
    follow = await asyncio.get_running_loop().run_in_executor(
        None, lambda: wait_for(lambda: shard_subscribers(BUS_KEY) == 2, 10))
    check(f"every client subscribed to {CHANNEL!r}; both nodes follow it in Redis", follow,
          f"PUBSUB SHARDNUMSUB {BUS_KEY} = {shard_subscribers(BUS_KEY)}")

    # --- publish ?all=true to each node: every client gets each exactly once ------
    # Joined, a publication posted to either node reaches the clients of both: one
    # through each node, each node enqueuing for its own clients.
    data1 = {h: f"round1-{h}-{uuid.uuid4().hex[:8]}" for h in (h1, h2)}
    enq, hops = [], []
    for h in (h1, h2):
        status, body = http("POST", h, "/publish?all=true", data1[h].encode())
        r = json.loads(body) if status == 200 else {}
        enq.append(r.get("enqueued", -1))
        hops.append(r.get("nodes_accepted", -1))
    check("publish ?all=true to both nodes' internal APIs", enq == [len(on1), len(on2)] and hops == [2, 2],
          f"enqueued {enq}, expected {[len(on1), len(on2)]}; nodes {hops}, expected [2, 2]")
    await await_for(lambda: all(c.received(d) >= 1 for c in clients for d in data1.values()), 5)
    unsettled = await sentinel(clients, (h1, h2))  # a duplicate would have arrived before it
    counts = [[c.received(d) for d in data1.values()] for c in clients]
    check(f"all {n} clients receive the publication exactly once",
          not unsettled and counts == [[1, 1]] * n,
          unsettled or f"each of node 1's and node 2's, counts {counts}")

    # --- publish a channel to node 1 only: node 2's clients get it through Redis ----
    data_ch = f"channel1-{uuid.uuid4().hex[:8]}"
    received_before = metrics(h2).get('pushgate_broker_received_total{target="channel"}', 0)
    status, body = http("POST", h1, f"/publish?channel={CHANNEL}", data_ch.encode())
    r = json.loads(body) if status == 200 else {}
    check(f"publish ?channel={CHANNEL} to node 1 only: nodes == 2 (both have subscribers)",
          r.get("nodes_accepted") == 2 and r.get("enqueued") == len(on1), f"HTTP {status} {body.strip()}")
    await await_for(lambda: all(c.received(data_ch) >= 1 for c in clients), 5)
    unsettled = await sentinel(clients, (h1, h2))
    counts2 = [c.received(data_ch) for c in on2]
    check(f"node 2's {len(on2)} clients (through haproxy) receive node 1's publication exactly once",
          not unsettled and counts2 == [1] * len(on2), unsettled or f"counts {counts2}")
    counts1 = [c.received(data_ch) for c in on1]
    check(f"node 1's {len(on1)} clients receive it exactly once too",
          not unsettled and counts1 == [1] * len(on1), unsettled or f"counts {counts1}")
    received = metrics(h2).get('pushgate_broker_received_total{target="channel"}', 0) - received_before
    check("node 2 received it from Redis once (pushgate_broker_received_total{target=\"channel\"})",
          received == 1, f"+{received:g}")

    # --- drain node 1 -------------------------------------------------------------
    t0 = time.monotonic()
    n1.send_signal(signal.SIGTERM)
    saw503 = await asyncio.get_running_loop().run_in_executor(
        None, lambda: wait_for(lambda: http("GET", h1, "/readyz", timeout=1)[0] == 503, 3, 0.02))
    check("node 1 /readyz answers 503 once SIGTERM starts the drain", saw503)
    moved = await await_for(lambda: all(len(c.sessions) >= 2 for c in on1), 20)
    codes = [c.sessions[0].close_code for c in on1]
    check("node 1's clients are closed with 1001 (going away)", codes == [1001] * len(on1), f"codes {codes}")
    closes = [c.sessions[0] for c in on1]
    check("node 1's clients reconnect through haproxy to node 2",
          moved and all(node_of(c.conn_id) == "e2e2" for c in on1),
          f"{sum(len(c.sessions) >= 2 for c in on1)}/{len(on1)} reconnected in {time.monotonic() - t0:.1f} s, "
          f"{sum(c.reconnect_errors for c in on1)} failed attempts")
    check("node 2's clients are untouched", all(len(c.sessions) == 1 and not c.ws.closed.is_set() for c in on2))
    rc = await asyncio.get_running_loop().run_in_executor(None, lambda: _wait(n1, 10))
    check("node 1 exits 0 after draining", rc == 0, f"exit code {rc} after {time.monotonic() - t0:.1f} s")
    down = await asyncio.get_running_loop().run_in_executor(
        None, lambda: wait_for(lambda: haproxy_status(stats).get("pushgate1", "").startswith("DOWN"), 10, 0.1))
    check("haproxy marks node 1 DOWN", down, str(haproxy_status(stats)))
    del closes
    # Node 1 left the cluster: only node 2 follows the channel now.
    alone = await asyncio.get_running_loop().run_in_executor(
        None, lambda: wait_for(lambda: shard_subscribers(BUS_KEY) == 1, 10))
    check(f"after the drain only node 2 follows {CHANNEL!r} in Redis", alone,
          f"PUBSUB SHARDNUMSUB {BUS_KEY} = {shard_subscribers(BUS_KEY)}")

    # --- publish to node 2: everyone is there now ---------------------------------
    data2 = f"round2-{uuid.uuid4().hex[:8]}"
    status, body = http("POST", h2, "/publish?all=true", data2.encode())
    r = json.loads(body) if status == 200 else {}
    got = r.get("enqueued")
    check("publish ?all=true to node 2 reaches all clients", got == n and r.get("nodes_accepted") == 1,
          f"HTTP {status}, enqueued {got}, nodes {r.get('nodes')}")
    await await_for(lambda: all(c.received(data2) >= 1 for c in clients), 5)
    unsettled = await sentinel(clients, (h2,))
    counts = [c.received(data2) for c in clients]
    check(f"all {n} clients receive the second publication exactly once",
          not unsettled and counts == [1] * n, unsettled or f"counts {counts}")

    # --- the reconnected clients subscribed again on node 2 ------------------------
    data_ch2 = f"channel2-{uuid.uuid4().hex[:8]}"
    status, body = http("POST", h2, f"/publish?channel={CHANNEL}", data_ch2.encode())
    r = json.loads(body) if status == 200 else {}
    check(f"publish ?channel={CHANNEL} to node 2: all {n} subscribers are there, nodes == 1",
          r.get("enqueued") == n and r.get("nodes_accepted") == 1, f"HTTP {status} {body.strip()}")
    await await_for(lambda: all(c.received(data_ch2) >= 1 for c in clients), 5)
    unsettled = await sentinel(clients, (h2,))
    moved_counts = [c.received(data_ch2) for c in on1]
    check(f"the {len(on1)} clients that reconnected to node 2 receive it exactly once",
          not unsettled and moved_counts == [1] * len(on1), unsettled or f"counts {moved_counts}")
    stayed = [c.received(data_ch2) for c in on2]
    check(f"node 2's own {len(on2)} clients receive it exactly once",
          not unsettled and stayed == [1] * len(on2), unsettled or f"counts {stayed}")

    # --- the container health check script (deploy/healthcheck.sh) ----------------
    def hc(port):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}
        env["PUSHGATE_HTTP_ADDR"] = f"127.0.0.1:{port}"
        return subprocess.run(["bash", ARGS.healthcheck], env=env, timeout=10,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    r2, r1 = hc(h2), hc(h1)
    check("deploy/healthcheck.sh: 0 for the live node, non-zero for the stopped one", r2 == 0 and r1 != 0,
          f"node 2 → {r2}, node 1 → {r1}")

    for c in clients:
        c.stop = True
    await asyncio.gather(*(c.ws.close() for c in clients))
    for r in reconnectors:
        r.cancel()


def _wait(p, timeout):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 120))
    except Exception as e:  # noqa: BLE001 - any crash is one failed check
        check("e2e run completes", False, f"{type(e).__name__}: {e}")
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed or not passed else 0)
