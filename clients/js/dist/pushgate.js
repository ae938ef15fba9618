// pushgate-client: built from clients/js/src by 'npm run build' (do not edit).

// src/backoff.ts
var DEFAULT_BACKOFF = { minDelayMs: 500, maxDelayMs: 2e4 };
function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
  const exponent = Math.min(Math.max(attempt, 0), 30);
  const bound = Math.min(options.maxDelayMs, options.minDelayMs * 2 ** exponent);
  return Math.floor(random() * bound);
}
function drainDelay(spreadMs, random = Math.random) {
  return Math.floor(random() * Math.max(spreadMs, 0));
}

// src/close-policy.ts
var CLOSE_GOING_AWAY = 1001;
var CLOSE_PROTOCOL_ERROR = 1002;
var CLOSE_ABNORMAL = 1006;
var CLOSE_INVALID_PAYLOAD = 1007;
var CLOSE_TOO_BIG = 1009;
var CLOSE_TOKEN_EXPIRED = 4003;
function closeAction(code) {
  switch (code) {
    case CLOSE_GOING_AWAY:
      return "drain";
    case CLOSE_TOKEN_EXPIRED:
      return "new-token";
    case CLOSE_PROTOCOL_ERROR:
    case CLOSE_INVALID_PAYLOAD:
    case CLOSE_TOO_BIG:
      return "stop";
    default:
      return "reconnect";
  }
}

// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** Adds a listener; returns a function that removes it. */
  on(event, listener) {
    let set = this.listeners.get(event);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }
  /** Adds a listener called once, at the next event. */
  once(event, listener) {
    const off = this.on(event, (value) => {
      off();
      listener(value);
    });
    return off;
  }
  off(event, listener) {
    this.listeners.get(event)?.delete(listener);
  }
  /** Number of listeners of `event`. */
  listenerCount(event) {
    return this.listeners.get(event)?.size ?? 0;
  }
  /** Calls every listener of `event`; returns whether there was one. @internal */
  emit(event, value) {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return false;
    for (const listener of [...set]) {
      try {
        listener(value);
      } catch (error) {
        this.onListenerError(String(event), error);
      }
    }
    return true;
  }
  /** Where exceptions thrown by listeners go. @internal */
  onListenerError(event, error) {
    console.error(`pushgate-client: a "${event}" listener threw`, error);
  }
};

// src/errors.ts
var PushgateError = class extends Error {
  constructor(type, message, details = {}) {
    super(message);
    this.name = "PushgateError";
    this.type = type;
    if (details.code !== void 0) this.code = details.code;
    if (details.status !== void 0) this.status = details.status;
    if (details.channel !== void 0) this.channel = details.channel;
    if (details.cause !== void 0) this.cause = details.cause;
  }
};

// src/frames.ts
var FrameError = class extends Error {
};
function parseText(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new FrameError(`not JSON: ${e.message}`);
  }
  if (typeof value !== "object" || value === null || typeof value.type !== "string") {
    throw new FrameError('not a JSON object with a string "type"');
  }
  const m = value;
  const bad = (what) => new FrameError(`"${m.type}" message: ${what}`);
  switch (m.type) {
    case "connected":
      if (typeof m.heartbeat_ms !== "number" || typeof m.conn !== "string") throw bad("no conn or heartbeat_ms");
      break;
    case "pub":
      if (typeof m.data !== "string") throw bad("data is not a string");
      if (m.offset !== void 0 && !isOffset(m.offset)) throw bad("offset is not a non-negative integer");
      break;
    case "subscribed":
    case "unsubscribed":
      if (!Array.isArray(m.channels)) throw bad("channels is not a list");
      break;
    case "error":
      if (typeof m.code !== "string") throw bad("no code");
      break;
    case "refreshed":
      if (typeof m.exp !== "number") throw bad("no exp");
      break;
    case "unrecoverable":
      if (typeof m.channel !== "string" || typeof m.epoch !== "string" || !isOffset(m.offset)) {
        throw bad("needs channel, epoch and offset");
      }
      break;
  }
  return m;
}
function isOffset(v) {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}
var WITH_OFFSET = 255;
function parseBinary(bytes) {
  if (bytes.length < 1) throw new FrameError("empty binary frame");
  let at = 0;
  const hasOffset = bytes[0] === WITH_OFFSET;
  if (hasOffset) at = 1;
  if (bytes.length < at + 1) throw new FrameError("binary frame ends before the channel length");
  const len = bytes[at];
  at += 1;
  if (bytes.length < at + len) throw new FrameError("binary frame ends inside the channel name");
  const channel = len > 0 ? String.fromCharCode(...bytes.subarray(at, at + len)) : void 0;
  at += len;
  const pub = { data: new Uint8Array(0), binary: true };
  if (channel !== void 0) pub.channel = channel;
  if (hasOffset) {
    if (bytes.length < at + 8) throw new FrameError("binary frame ends inside the offset");
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, 8);
    pub.offset = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
    at += 8;
  }
  pub.data = bytes.subarray(at);
  return pub;
}
var CHANNEL_CHARS = /^[A-Za-z0-9_\-.:@/=]{1,128}$/;
function channelNameProblem(name) {
  if (typeof name !== "string") return "a channel name must be a string";
  if (CHANNEL_CHARS.test(name)) return void 0;
  if (name.length === 0 || name.length > 128) return `channel ${JSON.stringify(name)}: length must be 1-128`;
  return `channel ${JSON.stringify(name)}: only ASCII letters, digits and _ - . : @ / = are allowed`;
}

// src/heartbeat.ts
var DeadLinkDetector = class {
  constructor(intervalMs, hooks) {
    this.lastReceived = Date.now();
    this.pinged = false;
    this.running = false;
    this.intervalMs = intervalMs;
    this.hooks = hooks;
  }
  start() {
    this.running = true;
    this.received();
    this.arm();
  }
  stop() {
    this.running = false;
    clearTimeout(this.timer);
  }
  /** A frame arrived. */
  received() {
    this.lastReceived = Date.now();
    this.pinged = false;
  }
  arm() {
    if (!this.running) return;
    const due = this.lastReceived + (this.pinged ? 2 : 1) * this.intervalMs;
    this.timer = setTimeout(() => this.check(), Math.max(due - Date.now(), 0));
  }
  check() {
    if (!this.running) return;
    const idle = Date.now() - this.lastReceived;
    if (idle >= 2 * this.intervalMs) {
      this.running = false;
      this.hooks.dead(idle);
      return;
    }
    if (idle >= this.intervalMs && !this.pinged) {
      this.pinged = true;
      this.hooks.ping();
    }
    this.arm();
  }
};

// src/network.ts
var NetworkEvents = class {
  constructor(onOffline, onOnline) {
    this.listening = false;
    this.onOffline = () => onOffline();
    this.onOnline = () => onOnline();
  }
  start() {
    const g = globalThis;
    if (this.listening || typeof g.addEventListener !== "function") return;
    this.listening = true;
    g.addEventListener("offline", this.onOffline);
    g.addEventListener("online", this.onOnline);
  }
  stop() {
    const g = globalThis;
    if (!this.listening || typeof g.removeEventListener !== "function") return;
    this.listening = false;
    g.removeEventListener("offline", this.onOffline);
    g.removeEventListener("online", this.onOnline);
  }
};

// src/subscription.ts
var Subscription = class extends Emitter {
  /** @internal */
  constructor(owner, channel, options = {}) {
    super();
    this.currentState = "subscribing";
    /** What the last subscribe command asked for. */
    this.sentSince = false;
    this.sentLatest = false;
    this.owner = owner;
    this.channel = channel;
    this.wantLatest = options.latest === true;
    if (options.since) {
      this.epoch = options.since.epoch;
      this.offset = options.since.offset;
    }
  }
  get state() {
    return this.currentState;
  }
  /** The last position delivered on this channel (history channels), for `since` elsewhere. */
  get position() {
    return this.epoch !== void 0 && this.offset !== void 0 ? { epoch: this.epoch, offset: this.offset } : void 0;
  }
  /** Stops following the channel. Publications already received are not taken back. */
  unsubscribe() {
    if (this.currentState === "unsubscribed") return;
    this.setState("unsubscribed");
    this.owner.removeSubscription(this, true);
  }
  /** The subscribe command's view of this subscription. @internal */
  request() {
    const since = this.position;
    const latest = since === void 0 && this.wantLatest;
    this.sentSince = since !== void 0;
    this.sentLatest = latest;
    return since ? { since, latest } : { latest };
  }
  /** The server's `subscribed` reply for this channel. @internal */
  confirmed(position, recovered, unrecovered) {
    if (this.currentState === "unsubscribed") return;
    const previous = this.position;
    if (unrecovered) {
      this.moveTo(position);
      this.setState("subscribed");
      this.emit("subscribed", withPosition({ recovered: false }, position));
      this.lost({ channel: this.channel, cause: "resubscribe", previous, position });
      return;
    }
    if (recovered && position) {
      this.epoch = position.epoch;
    } else if (position) {
      if (this.sentSince && previous && previous.epoch !== position.epoch) {
        this.moveTo(position);
        this.lost({ channel: this.channel, cause: "resubscribe", previous, position });
      } else {
        this.epoch = position.epoch;
        const start = this.sentLatest ? position.offset - 1 : position.offset;
        this.offset = this.offset === void 0 ? start : Math.max(this.offset, start);
      }
    } else if (this.sentSince) {
      this.epoch = void 0;
      this.offset = void 0;
    }
    this.setState("subscribed");
    this.emit("subscribed", withPosition({ recovered: recovered && position !== void 0 }, position));
  }
  /** Hands a publication to the listeners unless it is a duplicate; false when dropped. @internal */
  deliver(pub) {
    if (pub.offset !== void 0) {
      if (this.offset !== void 0 && pub.offset <= this.offset) return false;
      this.offset = pub.offset;
    }
    this.emit("publication", pub);
    return true;
  }
  /** The server's `unrecoverable` message: the stream continues after `position`. @internal */
  streamLost(position) {
    if (this.currentState === "unsubscribed") return;
    const previous = this.position;
    this.moveTo(position);
    this.lost({ channel: this.channel, cause: "stream_lost", previous, position });
  }
  /** The connection is gone; the client will subscribe again. @internal */
  interrupted() {
    if (this.currentState === "subscribed") this.setState("subscribing");
  }
  /** The subscription was refused or dropped by the server; it is over. @internal */
  failed(error) {
    if (this.currentState === "unsubscribed") return;
    this.setState("unsubscribed");
    this.owner.removeSubscription(this, false);
    if (!this.emit("error", error)) this.owner.reportUnhandled(error);
  }
  moveTo(position) {
    this.epoch = position?.epoch;
    this.offset = position?.offset;
  }
  lost(event) {
    if (!this.emit("unrecoverable", event)) {
      this.owner.reportUnhandled(
        new PushgateError("unrecoverable", `channel ${this.channel}: publications were missed and cannot be replayed`, {
          channel: this.channel
        })
      );
    }
  }
  setState(state) {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }
  onListenerError(event, error) {
    this.owner.reportUnhandled(
      new PushgateError("listener", `a "${event}" listener of subscription ${this.channel} threw`, {
        channel: this.channel,
        cause: error
      })
    );
  }
};
function withPosition(event, position) {
  if (position) event.position = position;
  return event;
}

// src/token.ts
function jwtExpiry(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return void 0;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - b64.length % 4) % 4);
    const claims = JSON.parse(atob(padded));
    return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp : void 0;
  } catch {
    return void 0;
  }
}
function refreshAt(expSec, receivedMs, leadMs) {
  const expMs = expSec * 1e3;
  const lifetime = Math.max(expMs - receivedMs, 0);
  return expMs - Math.min(leadMs, lifetime / 2);
}
var TokenSource = class {
  constructor(fixed, getToken, leadMs) {
    this.receivedMs = 0;
    this.stale = false;
    this.token = fixed;
    this.getToken = getToken;
    this.leadMs = leadMs;
    if (fixed) this.remember(fixed);
  }
  /** Whether tokens can be renewed (a getToken was given). */
  get renewable() {
    return this.getToken !== void 0;
  }
  /** The token's expiry (Unix seconds), when known. */
  get expiry() {
    return this.expSec;
  }
  /** The next connection must not reuse the current token (401, 4003). */
  markStale() {
    this.stale = true;
  }
  /** The token for a new connection: the current one while it is good, else a fresh one. */
  async forConnect() {
    if (!this.getToken) return this.token;
    if (this.token !== void 0 && !this.stale && !this.nearExpiry()) return this.token;
    return this.fetch();
  }
  /** A fresh token from getToken (shared by concurrent callers). Throws what getToken throws. */
  fetch() {
    const getToken = this.getToken;
    if (!getToken) return Promise.reject(new Error("no getToken"));
    if (!this.inFlight) {
      this.inFlight = (async () => {
        try {
          const token = await getToken();
          if (typeof token !== "string" || token.length === 0) {
            throw new TypeError("getToken must return a non-empty string");
          }
          this.remember(token);
          return token;
        } finally {
          this.inFlight = void 0;
        }
      })();
    }
    return this.inFlight;
  }
  /** The server confirmed a refresh with this expiry. */
  refreshed(expSec) {
    this.expSec = expSec;
  }
  /** When to refresh the current token (ms since the epoch), or undefined when it never expires as far as we know. */
  refreshDueMs() {
    if (!this.getToken || this.expSec === void 0) return void 0;
    return refreshAt(this.expSec, this.receivedMs, this.leadMs);
  }
  nearExpiry() {
    const due = this.refreshDueMs();
    return due !== void 0 && Date.now() >= due;
  }
  remember(token) {
    this.token = token;
    this.receivedMs = Date.now();
    this.expSec = jwtExpiry(token);
    this.stale = false;
  }
};

// src/transport.ts
var SUBPROTOCOL = "pushgate.v1";
var OPEN = 1;
async function resolveWebSocket(given) {
  if (given) return given;
  const global = globalThis.WebSocket;
  if (global) return global;
  const name = "ws";
  try {
    const mod = await import(
      /* @vite-ignore */
      /* webpackIgnore: true */
      name
    );
    const ctor = mod.WebSocket ?? mod.default;
    if (ctor) return ctor;
  } catch {
  }
  throw new Error('no WebSocket implementation: install the "ws" package (npm i ws) or pass options.WebSocket');
}
function handshakeStatus(errorEvent) {
  const e = errorEvent;
  const text = [e?.message, e?.error?.message].find((m2) => typeof m2 === "string");
  const m = text ? /Unexpected server response: (\d{3})/.exec(text) : null;
  return m ? Number(m[1]) : void 0;
}
function describeErrorEvent(errorEvent) {
  const e = errorEvent;
  for (const m of [e?.message, e?.error?.message]) {
    if (typeof m === "string" && m.length > 0) return m;
  }
  return "WebSocket error";
}

// src/client.ts
var PER_CHANNEL_CODES = /* @__PURE__ */ new Set(["forbidden", "bad_channel", "subscription_limit"]);
var MAX_CHANNELS_PER_COMMAND = 100;
var MAX_TIMER_MS = 2147483647;
var PushgateClient = class extends Emitter {
  constructor(url, options = {}) {
    super();
    this.stats = { connects: 0, reconnects: 0, duplicatesDropped: 0 };
    this.subs = /* @__PURE__ */ new Map();
    /** Channels unsubscribed whose reply has not come: their publications are dropped quietly. */
    this.leaving = /* @__PURE__ */ new Set();
    this.pending = /* @__PURE__ */ new Map();
    this.nextId = 1;
    this.currentState = "disconnected";
    this.wanted = false;
    /** Bumped whenever a connection attempt is abandoned, so its async steps stop. */
    this.generation = 0;
    this.connectedOnSocket = false;
    this.attempt = 0;
    this.failedHandshakes = 0;
    this.everConnected = false;
    this.refreshing = false;
    /** When the last refresh command was sent (ms since the epoch). */
    this.lastRefreshMs = -Infinity;
    /** What subscriptions may call back into (kept off the public surface). */
    this.owner = {
      removeSubscription: (sub, tellServer) => this.removeSubscription(sub, tellServer),
      reportUnhandled: (error) => this.reportUnhandled(error)
    };
    // ---- browser online/offline ----
    this.network = new NetworkEvents(
      () => {
        if (this.ws) this.abandonSocket("browser offline");
      },
      () => {
        if (this.wanted && !this.ws && this.currentState === "connecting") {
          this.attempt = 0;
          void this.open();
        }
      }
    );
    this.url = url;
    this.options = options;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    if (!(this.backoff.minDelayMs > 0) || !(this.backoff.maxDelayMs >= this.backoff.minDelayMs)) {
      throw new RangeError("backoff: need 0 < minDelayMs <= maxDelayMs");
    }
    this.random = options.random ?? Math.random;
    this.tokens = new TokenSource(options.token, options.getToken, options.refreshLeadMs ?? 6e4);
  }
  get state() {
    return this.currentState;
  }
  /** Starts connecting (and keeps reconnecting until disconnect()). */
  connect() {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    this.listenToNetwork(true);
    void this.open();
  }
  /** Closes the connection (1000) and stops reconnecting. Subscriptions are kept for the next connect(). */
  disconnect() {
    this.wanted = false;
    this.generation++;
    this.listenToNetwork(false);
    clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    const was = this.currentState;
    this.teardown();
    if (ws) {
      try {
        ws.close(1e3, "client disconnect");
      } catch {
      }
    }
    if (was !== "disconnected") {
      this.setState("disconnected");
      this.emit("disconnected", { code: 1e3, reason: "client disconnect", reconnect: false });
    }
  }
  /**
   * Follows `channel`; `onPublication` (optional) is the subscription's first
   * `publication` listener. One Subscription per channel: subscribing again to a
   * followed channel throws.
   */
  subscribe(channel, onPublication, options = {}) {
    const problem = channelNameProblem(channel);
    if (problem) throw new TypeError(problem);
    if (this.subs.has(channel)) throw new Error(`already subscribed to ${channel}: use getSubscription()`);
    const sub = new Subscription(this.owner, channel, options);
    if (onPublication) sub.on("publication", onPublication);
    this.subs.set(channel, sub);
    this.leaving.delete(channel);
    if (this.currentState === "connected") this.sendSubscribe([sub]);
    return sub;
  }
  getSubscription(channel) {
    return this.subs.get(channel);
  }
  subscriptions() {
    return [...this.subs.values()];
  }
  removeSubscription(sub, tellServer) {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    if (tellServer && this.currentState === "connected") {
      this.leaving.add(sub.channel);
      this.send({ type: "unsubscribe", channels: [sub.channel] }, { kind: "unsubscribe" });
    }
  }
  reportUnhandled(error) {
    if (!this.emit("error", error)) console.error("pushgate-client:", error);
  }
  // ---- connection lifecycle ----
  async open() {
    clearTimeout(this.reconnectTimer);
    const generation = ++this.generation;
    const current = () => generation === this.generation && this.wanted;
    this.setState("connecting");
    this.lastStatus = void 0;
    let token;
    try {
      token = await this.tokens.forConnect();
    } catch (cause) {
      if (!current()) return;
      this.report("token", `getToken failed: ${messageOf(cause)}`, { cause });
      this.retry(CLOSE_ABNORMAL, "no token");
      return;
    }
    let Ctor;
    try {
      Ctor = await resolveWebSocket(this.options.WebSocket);
    } catch (cause) {
      if (!current()) return;
      this.giveUp("setup", messageOf(cause), { cause });
      return;
    }
    if (!current()) return;
    let ws;
    try {
      ws = new Ctor(this.url, token ? [SUBPROTOCOL, token] : [SUBPROTOCOL]);
    } catch (cause) {
      this.giveUp("setup", `cannot open ${this.url}: ${messageOf(cause)}`, { cause });
      return;
    }
    this.ws = ws;
    this.connectedOnSocket = false;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => {
      if (this.ws === ws) this.onFrame(event.data);
    };
    ws.onerror = (event) => {
      if (this.ws === ws) this.onSocketError(event);
    };
    ws.onclose = (event) => {
      if (this.ws === ws) this.onSocketClosed(event.code, event.reason ?? "");
    };
    this.connectTimer = setTimeout(() => {
      if (this.ws !== ws || this.connectedOnSocket) return;
      const ms = this.options.connectTimeoutMs ?? 1e4;
      this.report("connect_timeout", `no "connected" message within ${ms} ms`);
      this.abandonSocket("connect timeout");
    }, this.options.connectTimeoutMs ?? 1e4);
  }
  onSocketError(event) {
    const status = handshakeStatus(event);
    if (status !== void 0) this.lastStatus = status;
    const message = describeErrorEvent(event);
    if (status === 401) this.report("unauthorized", `handshake refused: ${message}`, { status });
    else this.report("transport", message, status !== void 0 ? { status } : {});
  }
  onSocketClosed(code, reason) {
    const wasConnected = this.connectedOnSocket;
    this.teardown();
    if (!this.wanted) {
      this.setState("disconnected");
      this.emit("disconnected", { code, reason, reconnect: false });
      return;
    }
    let action = closeAction(code);
    if (!wasConnected) {
      this.failedHandshakes++;
      const limit = this.options.failuresBeforeNewToken ?? 3;
      if (this.lastStatus === 401 || this.lastStatus === void 0 && this.failedHandshakes >= limit) {
        this.tokens.markStale();
      }
    }
    if (action === "new-token") {
      this.tokens.markStale();
      action = "reconnect";
    }
    if (action === "stop") {
      this.wanted = false;
      this.listenToNetwork(false);
      this.report("protocol", `the server closed the connection with ${code} (${reason || "no reason"}); not reconnecting`, {
        code
      });
      this.setState("disconnected");
      this.emit("disconnected", { code, reason, reconnect: false });
      return;
    }
    const delayMs = action === "drain" ? drainDelay(this.options.drainSpreadMs ?? 2e3, this.random) : this.nextBackoff();
    this.schedule(code, reason, delayMs);
  }
  /** Drops the current socket without waiting for its close handshake (dead link, offline, timeout). */
  abandonSocket(reason) {
    const ws = this.ws;
    if (!ws) return;
    this.onSocketClosed(CLOSE_ABNORMAL, reason);
    try {
      ws.close(4e3, reason);
    } catch {
    }
  }
  /** After a failure before any socket (getToken): try again with backoff. */
  retry(code, reason) {
    this.schedule(code, reason, this.nextBackoff());
  }
  schedule(code, reason, delayMs) {
    clearTimeout(this.reconnectTimer);
    this.emit("disconnected", { code, reason, reconnect: true, delayMs });
    this.setState("connecting");
    this.reconnectTimer = setTimeout(() => void this.open(), delayMs);
  }
  nextBackoff() {
    return backoffDelay(this.attempt++, this.backoff, this.random);
  }
  giveUp(type, message, details) {
    this.wanted = false;
    this.listenToNetwork(false);
    this.teardown();
    this.report(type, message, details);
    this.setState("disconnected");
    this.emit("disconnected", { code: CLOSE_ABNORMAL, reason: message, reconnect: false });
  }
  /** Forgets the socket and everything tied to it. Its late events are ignored (this.ws !== ws). */
  teardown() {
    const ws = this.ws;
    this.ws = void 0;
    if (ws) {
      const ignore = () => void 0;
      ws.onmessage = ignore;
      ws.onerror = ignore;
      ws.onclose = ignore;
    }
    this.connectedOnSocket = false;
    clearTimeout(this.connectTimer);
    clearTimeout(this.refreshTimer);
    this.refreshing = false;
    this.deadLink?.stop();
    this.deadLink = void 0;
    this.pending.clear();
    this.leaving.clear();
    for (const sub of this.subs.values()) sub.interrupted();
  }
  // ---- incoming frames ----
  onFrame(data) {
    this.deadLink?.received();
    if (typeof data === "string") {
      let message;
      try {
        message = parseText(data);
      } catch (cause) {
        this.report("bad_frame", `unreadable message from the server: ${messageOf(cause)}`, { cause });
        return;
      }
      this.onMessage(message);
      return;
    }
    let bytes;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (!bytes) {
      this.report("bad_frame", "binary frame of an unsupported type (binaryType must be arraybuffer)");
      return;
    }
    try {
      this.deliver(parseBinary(bytes));
    } catch (cause) {
      if (!(cause instanceof FrameError)) throw cause;
      this.report("bad_frame", `unreadable binary frame: ${cause.message}`, { cause });
    }
  }
  onMessage(m) {
    const msg = m;
    switch (msg.type) {
      case "connected":
        this.onConnected(msg.conn, msg.user, msg.heartbeat_ms, msg.channels ?? []);
        return;
      case "pub": {
        const pub = { data: msg.data, binary: false };
        if (msg.channel !== void 0) pub.channel = msg.channel;
        if (msg.offset !== void 0) pub.offset = msg.offset;
        this.deliver(pub);
        return;
      }
      case "subscribed": {
        this.takePending(msg.id);
        for (const channel of msg.channels) {
          this.subs.get(channel)?.confirmed(
            msg.positions?.[channel],
            msg.recovered?.includes(channel) ?? false,
            msg.unrecovered?.includes(channel) ?? false
          );
        }
        return;
      }
      case "unsubscribed":
        this.takePending(msg.id);
        for (const channel of msg.channels) this.leaving.delete(channel);
        return;
      case "pong":
        this.takePending(msg.id);
        return;
      case "error":
        this.onErrorReply(msg.code, msg.message ?? "", msg.id);
        return;
      case "refreshed":
        this.onRefreshed(msg.exp, msg.unsubscribed ?? [], msg.id);
        return;
      case "token_expired":
        void this.refreshToken();
        return;
      case "unrecoverable":
        this.subs.get(msg.channel)?.streamLost({ epoch: msg.epoch, offset: msg.offset });
        return;
      default:
        this.emit("message", m);
    }
  }
  onConnected(conn, user, heartbeatMs, channels) {
    if (this.connectedOnSocket) return;
    this.connectedOnSocket = true;
    clearTimeout(this.connectTimer);
    this.attempt = 0;
    this.failedHandshakes = 0;
    this.stats.connects++;
    const reconnect = this.everConnected;
    if (reconnect) this.stats.reconnects++;
    this.everConnected = true;
    if (this.options.deadLinkDetection !== false && heartbeatMs > 0) {
      this.deadLink = new DeadLinkDetector(heartbeatMs, {
        ping: () => this.send({ type: "ping" }, { kind: "ping" }),
        dead: (idleMs) => {
          this.report("dead_link", `nothing received for ${idleMs} ms (heartbeat ${heartbeatMs} ms): reconnecting`);
          this.abandonSocket("dead link");
        }
      });
      this.deadLink.start();
    }
    this.scheduleRefresh();
    this.setState("connected");
    this.sendSubscribe([...this.subs.values()]);
    const event = { conn, heartbeatMs, channels, reconnect };
    if (user !== void 0) event.user = user;
    this.emit("connected", event);
  }
  deliver(pub) {
    if (pub.channel !== void 0) {
      const sub = this.subs.get(pub.channel);
      if (sub) {
        if (!sub.deliver(pub)) this.stats.duplicatesDropped++;
        return;
      }
      if (this.leaving.has(pub.channel)) return;
    }
    this.emit("publication", pub);
  }
  onErrorReply(code, message, id) {
    const cmd = this.takePending(id);
    if (cmd?.kind === "subscribe") {
      const subs = cmd.channels.map((c) => this.subs.get(c)).filter((s) => s !== void 0);
      if (cmd.channels.length > 1 && PER_CHANNEL_CODES.has(code)) {
        for (const sub of subs) this.sendSubscribe([sub]);
        return;
      }
      for (const sub of subs) {
        sub.failed(
          new PushgateError("subscribe_failed", `subscribe ${sub.channel} refused: ${code}: ${message}`, {
            code,
            channel: sub.channel
          })
        );
      }
      return;
    }
    if (cmd?.kind === "refresh") {
      this.refreshing = false;
      this.report("refresh_failed", `token refresh refused: ${message}`, { code });
      this.retryRefreshLater();
      return;
    }
    this.report("server", `error reply: ${code}: ${message}`, { code });
  }
  // ---- commands ----
  sendSubscribe(subs) {
    if (subs.length === 0) return;
    const plain = [];
    const latest = [];
    for (const sub of subs) {
      const req = sub.request();
      (req.latest ? latest : plain).push([sub, req]);
    }
    for (const group of [plain, latest]) {
      for (let i = 0; i < group.length; i += MAX_CHANNELS_PER_COMMAND) {
        const chunk = group.slice(i, i + MAX_CHANNELS_PER_COMMAND);
        const channels = chunk.map(([sub]) => sub.channel);
        const command = { type: "subscribe", channels };
        const since = {};
        for (const [sub, req] of chunk) if (req.since) since[sub.channel] = req.since;
        if (Object.keys(since).length > 0) command.since = since;
        if (group === latest) command.latest = true;
        this.send(command, { kind: "subscribe", channels });
      }
    }
  }
  send(command, pending) {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    const id = this.nextId++;
    try {
      ws.send(JSON.stringify({ ...command, id }));
    } catch (cause) {
      this.report("transport", `send failed: ${messageOf(cause)}`, { cause });
      return false;
    }
    this.pending.set(id, pending);
    return true;
  }
  takePending(id) {
    if (typeof id !== "number") return void 0;
    const cmd = this.pending.get(id);
    this.pending.delete(id);
    return cmd;
  }
  // ---- token refresh ----
  scheduleRefresh() {
    clearTimeout(this.refreshTimer);
    const due = this.tokens.refreshDueMs();
    if (due === void 0 || !this.connectedOnSocket) return;
    const at = Math.max(due, this.lastRefreshMs + (this.options.minRefreshIntervalMs ?? 12e3));
    const delay = Math.min(Math.max(at - Date.now(), 0), MAX_TIMER_MS);
    this.refreshTimer = setTimeout(() => void this.refreshToken(), delay);
  }
  async refreshToken() {
    if (this.refreshing || !this.connectedOnSocket || !this.tokens.renewable) return;
    this.refreshing = true;
    const ws = this.ws;
    let token;
    try {
      token = await this.tokens.fetch();
    } catch (cause) {
      this.refreshing = false;
      if (this.ws !== ws) return;
      this.report("token", `getToken failed (refresh): ${messageOf(cause)}`, { cause });
      this.retryRefreshLater();
      return;
    }
    if (this.ws !== ws || !this.connectedOnSocket) return;
    if (this.send({ type: "refresh", token }, { kind: "refresh" })) this.lastRefreshMs = Date.now();
    else this.refreshing = false;
  }
  onRefreshed(exp, unsubscribed, id) {
    this.takePending(id);
    this.refreshing = false;
    this.tokens.refreshed(exp);
    this.scheduleRefresh();
    this.emit("refreshed", { exp });
    for (const channel of unsubscribed) {
      this.subs.get(channel)?.failed(
        new PushgateError("unsubscribed", `the refreshed token no longer allows ${channel}`, { channel })
      );
    }
  }
  /** After a failed refresh: again in half the time left (1-30 s); a 4003 close brings a new token anyway. */
  retryRefreshLater() {
    clearTimeout(this.refreshTimer);
    const exp = this.tokens.expiry;
    const left = exp !== void 0 ? exp * 1e3 - Date.now() : 1e4;
    const delay = Math.min(Math.max(left / 2, 1e3), 3e4);
    this.refreshTimer = setTimeout(() => void this.refreshToken(), delay);
  }
  listenToNetwork(on) {
    if (on) this.network.start();
    else this.network.stop();
  }
  // ---- events ----
  setState(state) {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }
  report(type, message, details = {}) {
    this.reportUnhandled(new PushgateError(type, message, details));
  }
  onListenerError(event, error) {
    const err = new PushgateError("listener", `a "${event}" listener threw: ${messageOf(error)}`, { cause: error });
    if (event === "error") console.error("pushgate-client:", err);
    else this.reportUnhandled(err);
  }
};
function messageOf(e) {
  return e instanceof Error ? e.message : String(e);
}
export {
  DEFAULT_BACKOFF,
  PushgateClient,
  PushgateError,
  Subscription,
  backoffDelay,
  channelNameProblem,
  closeAction,
  drainDelay,
  jwtExpiry,
  parseBinary,
  parseText
};
