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
export declare class DeadLinkDetector {
    private readonly intervalMs;
    private readonly hooks;
    private lastReceived;
    private pinged;
    private timer;
    private running;
    constructor(intervalMs: number, hooks: DeadLinkHooks);
    start(): void;
    stop(): void;
    /** A frame arrived. */
    received(): void;
    private arm;
    private check;
}
