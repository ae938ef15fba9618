/**
 * PushgateClient: one WebSocket connection to a pushgate gateway, kept alive.
 *
 * It reconnects with backoff and full jitter (the close code decides how: close-policy.ts),
 * subscribes again with each channel's last position so the server replays what was
 * missed (subscription.ts drops duplicates), refreshes the token before it expires, and
 * declares the link dead when nothing arrives for twice the heartbeat interval. Every
 * problem reaches an `error` event; nothing is retried silently forever without one.
 */
import { backoffDelay, BackoffOptions, DEFAULT_BACKOFF, drainDelay } from "./backoff.js";
import { CLOSE_ABNORMAL, closeAction } from "./close-policy.js";
import { Emitter, Listener } from "./emitter.js";
import { PushgateError, PushgateErrorDetails, PushgateErrorType } from "./errors.js";
import { channelNameProblem, FrameError, parseBinary, parseText, Publication, ServerMessage, UnknownMessage } from "./frames.js";
import { DeadLinkDetector } from "./heartbeat.js";
import { NetworkEvents } from "./network.js";
import type { ClientEvents, ClientState, ClientStats, ConnectedEvent, PushgateClientOptions } from "./options.js";
import { SubscribeOptions, Subscription, SubscriptionOwner } from "./subscription.js";
import { TokenSource } from "./token.js";
import { describeErrorEvent, handshakeStatus, OPEN, resolveWebSocket, SUBPROTOCOL, WebSocketConstructor, WebSocketLike } from "./transport.js";

type Pending = { kind: "subscribe"; channels: string[] } | { kind: "unsubscribe" } | { kind: "ping" } | { kind: "refresh" };

/** Error codes after which each channel of a refused multi-channel subscribe is tried alone. */
const PER_CHANNEL_CODES = new Set(["forbidden", "bad_channel", "subscription_limit"]);
/** The most channels one command may name (the server's limit). */
const MAX_CHANNELS_PER_COMMAND = 100;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2_147_483_647;

export class PushgateClient extends Emitter<ClientEvents> {
  readonly url: string;
  readonly stats: ClientStats = { connects: 0, reconnects: 0, duplicatesDropped: 0 };
  private readonly options: PushgateClientOptions;
  private readonly backoff: BackoffOptions;
  private readonly random: () => number;
  private readonly tokens: TokenSource;
  private readonly subs = new Map<string, Subscription>();
  /** Channels unsubscribed whose reply has not come: their publications are dropped quietly. */
  private readonly leaving = new Set<string>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private currentState: ClientState = "disconnected";
  private wanted = false;
  /** Bumped whenever a connection attempt is abandoned, so its async steps stop. */
  private generation = 0;
  private ws?: WebSocketLike;
  private connectedOnSocket = false;
  private lastStatus?: number;
  private attempt = 0;
  private failedHandshakes = 0;
  private everConnected = false;
  private reconnectTimer: unknown;
  private connectTimer: unknown;
  private refreshTimer: unknown;
  private refreshing = false;
  /** When the last refresh command was sent (ms since the epoch). */
  private lastRefreshMs = -Infinity;
  private deadLink?: DeadLinkDetector;
  /** What subscriptions may call back into (kept off the public surface). */
  private readonly owner: SubscriptionOwner = {
    removeSubscription: (sub, tellServer) => this.removeSubscription(sub, tellServer),
    reportUnhandled: (error) => this.reportUnhandled(error),
  };

  constructor(url: string, options: PushgateClientOptions = {}) {
    super();
    this.url = url;
    this.options = options;
    this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    if (!(this.backoff.minDelayMs > 0) || !(this.backoff.maxDelayMs >= this.backoff.minDelayMs)) {
      throw new RangeError("backoff: need 0 < minDelayMs <= maxDelayMs");
    }
    this.random = options.random ?? Math.random;
    this.tokens = new TokenSource(options.token, options.getToken, options.refreshLeadMs ?? 60_000);
  }

  get state(): ClientState {
    return this.currentState;
  }

  /** Starts connecting (and keeps reconnecting until disconnect()). */
  connect(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.attempt = 0;
    this.listenToNetwork(true);
    void this.open();
  }

  /** Closes the connection (1000) and stops reconnecting. Subscriptions are kept for the next connect(). */
  disconnect(): void {
    this.wanted = false;
    this.generation++;
    this.listenToNetwork(false);
    clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    const was = this.currentState;
    this.teardown();
    if (ws) {
      try {
        ws.close(1000, "client disconnect");
      } catch {
        // already closing
      }
    }
    if (was !== "disconnected") {
      this.setState("disconnected");
      this.emit("disconnected", { code: 1000, reason: "client disconnect", reconnect: false });
    }
  }

  /**
   * Follows `channel`; `onPublication` (optional) is the subscription's first
   * `publication` listener. One Subscription per channel: subscribing again to a
   * followed channel throws.
   */
  subscribe(channel: string, onPublication?: Listener<Publication>, options: SubscribeOptions = {}): Subscription {
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

  getSubscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  subscriptions(): Subscription[] {
    return [...this.subs.values()];
  }

  private removeSubscription(sub: Subscription, tellServer: boolean): void {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    if (tellServer && this.currentState === "connected") {
      this.leaving.add(sub.channel);
      this.send({ type: "unsubscribe", channels: [sub.channel] }, { kind: "unsubscribe" });
    }
  }

  private reportUnhandled(error: PushgateError): void {
    if (!this.emit("error", error)) console.error("pushgate-client:", error);
  }

  // ---- connection lifecycle ----

  private async open(): Promise<void> {
    clearTimeout(this.reconnectTimer);
    const generation = ++this.generation;
    const current = () => generation === this.generation && this.wanted;
    this.setState("connecting");
    this.lastStatus = undefined;
    let token: string | undefined;
    try {
      token = await this.tokens.forConnect();
    } catch (cause) {
      if (!current()) return;
      this.report("token", `getToken failed: ${messageOf(cause)}`, { cause });
      this.retry(CLOSE_ABNORMAL, "no token");
      return;
    }
    let Ctor: WebSocketConstructor;
    try {
      Ctor = await resolveWebSocket(this.options.WebSocket);
    } catch (cause) {
      if (!current()) return;
      this.giveUp("setup", messageOf(cause), { cause });
      return;
    }
    if (!current()) return;
    let ws: WebSocketLike;
    try {
      ws = new Ctor(this.url, token ? [SUBPROTOCOL, token] : [SUBPROTOCOL]);
    } catch (cause) {
      // A malformed URL: no point in trying again.
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
      const ms = this.options.connectTimeoutMs ?? 10_000;
      this.report("connect_timeout", `no "connected" message within ${ms} ms`);
      this.abandonSocket("connect timeout");
    }, this.options.connectTimeoutMs ?? 10_000);
  }

  private onSocketError(event: unknown): void {
    const status = handshakeStatus(event);
    if (status !== undefined) this.lastStatus = status;
    const message = describeErrorEvent(event);
    if (status === 401) this.report("unauthorized", `handshake refused: ${message}`, { status });
    else this.report("transport", message, status !== undefined ? { status } : {});
  }

  private onSocketClosed(code: number, reason: string): void {
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
      if (this.lastStatus === 401 || (this.lastStatus === undefined && this.failedHandshakes >= limit)) {
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
        code,
      });
      this.setState("disconnected");
      this.emit("disconnected", { code, reason, reconnect: false });
      return;
    }
    const delayMs = action === "drain" ? drainDelay(this.options.drainSpreadMs ?? 2000, this.random) : this.nextBackoff();
    this.schedule(code, reason, delayMs);
  }

  /** Drops the current socket without waiting for its close handshake (dead link, offline, timeout). */
  private abandonSocket(reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    // Handle the loss first (teardown detaches the socket's handlers), then close it.
    this.onSocketClosed(CLOSE_ABNORMAL, reason);
    try {
      ws.close(4000, reason);
    } catch {
      // already closed
    }
  }

  /** After a failure before any socket (getToken): try again with backoff. */
  private retry(code: number, reason: string): void {
    this.schedule(code, reason, this.nextBackoff());
  }

  private schedule(code: number, reason: string, delayMs: number): void {
    clearTimeout(this.reconnectTimer);
    this.emit("disconnected", { code, reason, reconnect: true, delayMs });
    this.setState("connecting");
    this.reconnectTimer = setTimeout(() => void this.open(), delayMs);
  }

  private nextBackoff(): number {
    return backoffDelay(this.attempt++, this.backoff, this.random);
  }

  private giveUp(type: PushgateErrorType, message: string, details: PushgateErrorDetails): void {
    this.wanted = false;
    this.listenToNetwork(false);
    this.teardown();
    this.report(type, message, details);
    this.setState("disconnected");
    this.emit("disconnected", { code: CLOSE_ABNORMAL, reason: message, reconnect: false });
  }

  /** Forgets the socket and everything tied to it. Its late events are ignored (this.ws !== ws). */
  private teardown(): void {
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      const ignore = () => undefined;
      // Handlers stay set (the `ws` package throws an unhandled 'error' without one).
      ws.onmessage = ignore;
      ws.onerror = ignore;
      ws.onclose = ignore;
    }
    this.connectedOnSocket = false;
    clearTimeout(this.connectTimer);
    clearTimeout(this.refreshTimer);
    this.refreshing = false;
    this.deadLink?.stop();
    this.deadLink = undefined;
    this.pending.clear();
    this.leaving.clear();
    for (const sub of this.subs.values()) sub.interrupted();
  }

  // ---- incoming frames ----

  private onFrame(data: unknown): void {
    this.deadLink?.received();
    if (typeof data === "string") {
      let message: ServerMessage | UnknownMessage;
      try {
        message = parseText(data);
      } catch (cause) {
        this.report("bad_frame", `unreadable message from the server: ${messageOf(cause)}`, { cause });
        return;
      }
      this.onMessage(message);
      return;
    }
    let bytes: Uint8Array | undefined;
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

  private onMessage(m: ServerMessage | UnknownMessage): void {
    const msg = m as ServerMessage;
    switch (msg.type) {
      case "connected":
        this.onConnected(msg.conn, msg.user, msg.heartbeat_ms, msg.channels ?? []);
        return;
      case "pub": {
        const pub: Publication = { data: msg.data, binary: false };
        if (msg.channel !== undefined) pub.channel = msg.channel;
        if (msg.offset !== undefined) pub.offset = msg.offset;
        this.deliver(pub);
        return;
      }
      case "subscribed": {
        this.takePending(msg.id);
        for (const channel of msg.channels) {
          this.subs.get(channel)?.confirmed(
            msg.positions?.[channel],
            msg.recovered?.includes(channel) ?? false,
            msg.unrecovered?.includes(channel) ?? false,
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
        this.emit("message", m as UnknownMessage);
    }
  }

  private onConnected(conn: string, user: string | undefined, heartbeatMs: number, channels: string[]): void {
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
        },
      });
      this.deadLink.start();
    }
    this.scheduleRefresh();
    this.setState("connected");
    // Subscribe before telling listeners, so a subscribe() inside a listener is sent once.
    this.sendSubscribe([...this.subs.values()]);
    const event: ConnectedEvent = { conn, heartbeatMs, channels, reconnect };
    if (user !== undefined) event.user = user;
    this.emit("connected", event);
  }

  private deliver(pub: Publication): void {
    if (pub.channel !== undefined) {
      const sub = this.subs.get(pub.channel);
      if (sub) {
        if (!sub.deliver(pub)) this.stats.duplicatesDropped++;
        return;
      }
      // Still in flight after our unsubscribe: expected, not a problem.
      if (this.leaving.has(pub.channel)) return;
    }
    this.emit("publication", pub);
  }

  private onErrorReply(code: string, message: string, id: unknown): void {
    const cmd = this.takePending(id);
    if (cmd?.kind === "subscribe") {
      const subs = cmd.channels.map((c) => this.subs.get(c)).filter((s): s is Subscription => s !== undefined);
      if (cmd.channels.length > 1 && PER_CHANNEL_CODES.has(code)) {
        // The server refuses a command as a whole: find out which channel it meant.
        for (const sub of subs) this.sendSubscribe([sub]);
        return;
      }
      for (const sub of subs) {
        sub.failed(
          new PushgateError("subscribe_failed", `subscribe ${sub.channel} refused: ${code}: ${message}`, {
            code,
            channel: sub.channel,
          }),
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

  private sendSubscribe(subs: Subscription[]): void {
    if (subs.length === 0) return;
    const plain: Array<[Subscription, ReturnType<Subscription["request"]>]> = [];
    const latest: typeof plain = [];
    for (const sub of subs) {
      const req = sub.request();
      (req.latest ? latest : plain).push([sub, req]);
    }
    for (const group of [plain, latest]) {
      for (let i = 0; i < group.length; i += MAX_CHANNELS_PER_COMMAND) {
        const chunk = group.slice(i, i + MAX_CHANNELS_PER_COMMAND);
        const channels = chunk.map(([sub]) => sub.channel);
        const command: Record<string, unknown> = { type: "subscribe", channels };
        const since: Record<string, unknown> = {};
        for (const [sub, req] of chunk) if (req.since) since[sub.channel] = req.since;
        if (Object.keys(since).length > 0) command.since = since;
        if (group === latest) command.latest = true;
        this.send(command, { kind: "subscribe", channels });
      }
    }
  }

  private send(command: Record<string, unknown>, pending: Pending): boolean {
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

  private takePending(id: unknown): Pending | undefined {
    if (typeof id !== "number") return undefined;
    const cmd = this.pending.get(id);
    this.pending.delete(id);
    return cmd;
  }

  // ---- token refresh ----

  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    const due = this.tokens.refreshDueMs();
    if (due === undefined || !this.connectedOnSocket) return;
    // The server allows a few refreshes per minute (max_refreshes_per_minute, 5): keep
    // minRefreshIntervalMs between them, even if getToken keeps handing out old tokens.
    // The server's token_expired still triggers one at once.
    const at = Math.max(due, this.lastRefreshMs + (this.options.minRefreshIntervalMs ?? 12_000));
    const delay = Math.min(Math.max(at - Date.now(), 0), MAX_TIMER_MS);
    this.refreshTimer = setTimeout(() => void this.refreshToken(), delay);
  }

  private async refreshToken(): Promise<void> {
    if (this.refreshing || !this.connectedOnSocket || !this.tokens.renewable) return;
    this.refreshing = true;
    const ws = this.ws;
    let token: string;
    try {
      token = await this.tokens.fetch();
    } catch (cause) {
      this.refreshing = false;
      if (this.ws !== ws) return;
      this.report("token", `getToken failed (refresh): ${messageOf(cause)}`, { cause });
      this.retryRefreshLater();
      return;
    }
    // A new connection since then uses the fresh token already.
    if (this.ws !== ws || !this.connectedOnSocket) return;
    if (this.send({ type: "refresh", token }, { kind: "refresh" })) this.lastRefreshMs = Date.now();
    else this.refreshing = false;
  }

  private onRefreshed(exp: number, unsubscribed: string[], id: unknown): void {
    this.takePending(id);
    this.refreshing = false;
    this.tokens.refreshed(exp);
    this.scheduleRefresh();
    this.emit("refreshed", { exp });
    for (const channel of unsubscribed) {
      this.subs.get(channel)?.failed(
        new PushgateError("unsubscribed", `the refreshed token no longer allows ${channel}`, { channel }),
      );
    }
  }

  /** After a failed refresh: again in half the time left (1-30 s); a 4003 close brings a new token anyway. */
  private retryRefreshLater(): void {
    clearTimeout(this.refreshTimer);
    const exp = this.tokens.expiry;
    const left = exp !== undefined ? exp * 1000 - Date.now() : 10_000;
    const delay = Math.min(Math.max(left / 2, 1000), 30_000);
    this.refreshTimer = setTimeout(() => void this.refreshToken(), delay);
  }

  // ---- browser online/offline ----

  private readonly network = new NetworkEvents(
    () => {
      if (this.ws) this.abandonSocket("browser offline");
    },
    () => {
      // Waiting for a backoff timer: try now instead.
      if (this.wanted && !this.ws && this.currentState === "connecting") {
        this.attempt = 0;
        void this.open();
      }
    },
  );

  private listenToNetwork(on: boolean): void {
    if (on) this.network.start();
    else this.network.stop();
  }

  // ---- events ----

  private setState(state: ClientState): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }

  private report(type: PushgateErrorType, message: string, details: PushgateErrorDetails = {}): void {
    this.reportUnhandled(new PushgateError(type, message, details));
  }

  protected override onListenerError(event: string, error: unknown): void {
    const err = new PushgateError("listener", `a "${event}" listener threw: ${messageOf(error)}`, { cause: error });
    if (event === "error") console.error("pushgate-client:", err);
    else this.reportUnhandled(err);
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
