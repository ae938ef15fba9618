// A WebSocket stand-in for the unit tests: the test plays the server, and every socket
// the client opens is kept in FakeWebSocket.instances.
export class FakeWebSocket {
  static instances = [];

  static reset() {
    FakeWebSocket.instances = [];
  }

  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.binaryType = "blob";
    this.sent = [];
    this.closedWith = undefined;
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    FakeWebSocket.instances.push(this);
  }

  send(text) {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 2;
  }

  // ---- the server's side ----

  /** The handshake succeeds and the server sends `connected`. */
  accept(heartbeatMs = 25000, extra = {}) {
    this.readyState = 1;
    this.onopen?.({});
    this.message({ type: "connected", v: 1, conn: "n1-1", heartbeat_ms: heartbeatMs, ...extra });
  }

  message(obj) {
    this.onmessage?.({ data: typeof obj === "string" ? obj : JSON.stringify(obj) });
  }

  binary(bytes) {
    const copy = new Uint8Array(bytes);
    this.onmessage?.({ data: copy.buffer });
  }

  /** The server closes with `code`. */
  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }

  /** The handshake fails (network or HTTP status, as the `ws` package reports it). */
  fail(message = "connect ECONNREFUSED") {
    this.readyState = 3;
    this.onerror?.({ message, error: new Error(message) });
    this.onclose?.({ code: 1006, reason: "", wasClean: false });
  }

  /** Commands of `type` the client sent. */
  commands(type) {
    return this.sent.filter((c) => c.type === type);
  }

  lastCommand(type) {
    const all = this.commands(type);
    return all[all.length - 1];
  }
}

/** Lets pending promise callbacks run (the client's connect steps are async). */
export async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}
