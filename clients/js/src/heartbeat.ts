/**
 * Dead-link detection. The server pings every `heartbeat_ms` with WebSocket pings, which
 * browsers answer but never show to the page; so the client watches for any incoming
 * frame instead. After `heartbeat_ms` of silence it sends the protocol's `ping` (the
 * `pong` is a frame the page sees); after twice `heartbeat_ms` it declares the link dead.
 * One timer, re-armed at each deadline; receiving a frame only records the time.
 */
export interface DeadLinkHooks {
  /** Send the protocol's ping. */
  ping(): void;
  /** Nothing arrived for `idleMs` (at least twice the interval). */
  dead(idleMs: number): void;
}

export class DeadLinkDetector {
  private readonly intervalMs: number;
  private readonly hooks: DeadLinkHooks;
  private lastReceived = Date.now();
  private pinged = false;
  private timer: unknown;
  private running = false;

  constructor(intervalMs: number, hooks: DeadLinkHooks) {
    this.intervalMs = intervalMs;
    this.hooks = hooks;
  }

  start(): void {
    this.running = true;
    this.received();
    this.arm();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
  }

  /** A frame arrived. */
  received(): void {
    this.lastReceived = Date.now();
    this.pinged = false;
  }

  private arm(): void {
    if (!this.running) return;
    const due = this.lastReceived + (this.pinged ? 2 : 1) * this.intervalMs;
    this.timer = setTimeout(() => this.check(), Math.max(due - Date.now(), 0));
  }

  private check(): void {
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
}
