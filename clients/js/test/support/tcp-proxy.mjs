// A TCP relay between clients and a gateway that the tests can cut: kill every
// connection at once (a 1006 for WebSocket: no close frame), refuse new ones, or
// black-hole them (bytes held, nothing closed: a blocked network).
import net from "node:net";

export class TcpProxy {
  constructor(targetPort, targetHost = "127.0.0.1") {
    this.target = { port: targetPort, host: targetHost };
    this.pairs = new Set();
    this.mode = "open"; // "open" | "refuse" | "blackhole"
    this.accepted = 0;
  }

  async start(port = 0) {
    this.server = net.createServer((client) => this.onClient(client));
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", resolve);
    });
    this.port = this.server.address().port;
    return this;
  }

  onClient(client) {
    this.accepted++;
    if (this.mode === "refuse") {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    const pair = { client, upstream };
    this.pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
    if (this.mode === "blackhole") this.hold(pair);
  }

  hold({ client, upstream }) {
    client.unpipe(upstream);
    upstream.unpipe(client);
    client.pause();
    upstream.pause();
  }

  release({ client, upstream }) {
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /**
   * Ends every relayed connection now, both sides, without a WebSocket close frame (the
   * client sees 1006). destroy(), not resetAndDestroy(): the latter leaves Node 20 spinning
   * at exit.
   */
  killAll() {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  /** New connections are closed at once. */
  refuse() {
    this.mode = "refuse";
  }

  /** Nothing passes in either direction, and nothing is closed (new connections too). */
  blackhole() {
    this.mode = "blackhole";
    for (const pair of this.pairs) this.hold(pair);
  }

  /** Back to relaying; held bytes flow again. */
  open() {
    const was = this.mode;
    this.mode = "open";
    if (was === "blackhole") for (const pair of this.pairs) this.release(pair);
  }

  async stop() {
    this.killAll();
    await new Promise((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
