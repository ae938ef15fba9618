#!/usr/bin/env python3
"""End-to-end: haproxy (the real one) in front of two pushgate nodes.

Run by tests/e2e/haproxy_drain.sh, which installs haproxy and builds the binary.
Standard library only: a minimal WebSocket client (RFC 6455) on asyncio.

  1. start node 1, node 2 and haproxy (loopback variant of deploy/haproxy/haproxy.cfg)
  2. N clients connect through haproxy; both nodes get some
  3. publish ?all=true to both nodes' internal APIs: every client gets it exactly once
  4. SIGTERM node 1: it turns unready, closes its clients with 1001, exits 0;
     they reconnect through haproxy to node 2; haproxy marks node 1 DOWN
  5. publish to node 2: all N clients get it exactly once
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


async def sentinel(clients, ports):
    """Publishes a marker to all and waits until every client has it: each connection
    delivers in order, so anything else sent to it before has arrived by then."""
    mark = f"sentinel-{uuid.uuid4().hex[:8]}"
    for port in ports:
        http("POST", port, "/publish?all=true", mark.encode())
    await await_for(lambda: all(c.received(mark) >= 1 for c in clients), 5)


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

    async def close(self):
        if not self.closed.is_set():
            self._send(0x8, struct.pack("!H", 1000))
            try:
                await asyncio.wait_for(self.closed.wait(), 2)
            except asyncio.TimeoutError:
                self.writer.close()


class Client:
    """A logical client: reconnects through the load balancer after a 1001."""

    def __init__(self, lb_port):
        self.lb = lb_port
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

    def node(name, node_id, ws, h):
        extra = []
        for field, port in zip(other_addrs, free_ports(len(other_addrs))):
            extra += ["--set", f"{field}=127.0.0.1:{port}"]
        return spawn(name, [ARGS.bin, "serve", "--ws-addr", f"127.0.0.1:{ws}", "--http-addr", f"127.0.0.1:{h}",
                            "--node-id", node_id, "--shards", "2",
                            "--set", "drain_window_ms=2000", "--set", "shutdown_grace_ms=6000", *extra])

    n1 = node("node1", "e2e1", ws1, h1)
    node("node2", "e2e2", ws2, h2)
    ok = wait_for(lambda: all(listening(p) for p in (ws1, h1, ws2, h2)), 30)
    check("two pushgate nodes listen", ok, f"node1 ws {ws1} api {h1}, node2 ws {ws2} api {h2}")
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
    clients = [Client(lb) for _ in range(n)]
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

    # --- publish to both nodes: every client gets it exactly once ---------------
    data1 = f"round1-{uuid.uuid4().hex[:8]}"
    enq = []
    for h in (h1, h2):
        status, body = http("POST", h, "/publish?all=true", data1.encode())
        enq.append(json.loads(body).get("enqueued", -1) if status == 200 else -1)
    check("publish ?all=true to both nodes' internal APIs", enq == [len(on1), len(on2)],
          f"enqueued {enq}, expected {[len(on1), len(on2)]}")
    await await_for(lambda: all(c.received(data1) >= 1 for c in clients), 5)
    await sentinel(clients, (h1, h2))  # a duplicate would have arrived before it
    counts = [c.received(data1) for c in clients]
    check(f"all {n} clients receive the publication exactly once", counts == [1] * n, f"counts {counts}")

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

    # --- publish to node 2: everyone is there now ---------------------------------
    data2 = f"round2-{uuid.uuid4().hex[:8]}"
    status, body = http("POST", h2, "/publish?all=true", data2.encode())
    got = json.loads(body).get("enqueued") if status == 200 else None
    check("publish ?all=true to node 2 reaches all clients", got == n, f"HTTP {status}, enqueued {got}")
    await await_for(lambda: all(c.received(data2) >= 1 for c in clients), 5)
    await sentinel(clients, (h2,))
    counts = [c.received(data2) for c in clients]
    check(f"all {n} clients receive the second publication exactly once", counts == [1] * n, f"counts {counts}")

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
