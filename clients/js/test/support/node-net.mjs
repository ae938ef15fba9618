// The network of one gateway as everything else sees it, made of TCP relays the test
// controls (no root, no iptables): its WebSocket port (haproxy's traffic to it), its HTTP
// port (haproxy's health checks, publishers) and its link to Redis. `blackhole()` holds
// every byte in both directions on all three at once, new connections included, and
// closes nothing: to the node, its clients, haproxy and Redis, the node is unreachable.
// The relays outlive the node, so a node restarted on the same ports is behind them again.
import { TcpProxy } from "./tcp-proxy.mjs";

export class NodeNet {
  /** Step 1: the relay to Redis (the node's `redis_url` is `this.redisUrl`). */
  static async toRedis(redisPort) {
    const n = new NodeNet();
    n.redis = await new TcpProxy(redisPort).start();
    n.redisUrl = `redis://127.0.0.1:${n.redis.port}`;
    return n;
  }

  /** Step 2: the relays in front of the started gateway `gw`. */
  async front(gw) {
    this.ws = await new TcpProxy(gw.ports.ws).start();
    this.http = await new TcpProxy(gw.ports.http).start();
    // What haproxy is given instead of the gateway's own ports.
    this.ports = { ws: this.ws.port, http: this.http.port };
    this.httpUrl = `http://127.0.0.1:${this.http.port}`;
    return this;
  }

  relays() {
    return [this.ws, this.http, this.redis].filter(Boolean);
  }

  /** Ends every WebSocket connection to the node at once, without a close frame. */
  killClients() {
    this.ws.killAll();
  }

  blackhole() {
    for (const r of this.relays()) r.blackhole();
  }

  open() {
    for (const r of this.relays()) r.open();
  }

  async stop() {
    for (const r of this.relays()) await r.stop();
  }
}
