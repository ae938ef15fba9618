/**
 * PushgateClient: one WebSocket connection to a pushgate gateway, kept alive.
 *
 * It reconnects with backoff and full jitter (the close code decides how: close-policy.ts),
 * subscribes again with each channel's last position so the server replays what was
 * missed (subscription.ts drops duplicates), refreshes the token before it expires, and
 * declares the link dead when nothing arrives for twice the heartbeat interval. Every
 * problem reaches an `error` event; nothing is retried silently forever without one.
 */
import { BackoffOptions } from "./backoff.js";
import { Emitter, Listener } from "./emitter.js";
import { PushgateError } from "./errors.js";
import { Publication, UnknownMessage } from "./frames.js";
import { SubscribeOptions, Subscription, SubscriptionOwner } from "./subscription.js";
import { WebSocketConstructor } from "./transport.js";
export type ClientState = "connecting" | "connected" | "disconnected";
export interface PushgateClientOptions {
    /** Returns a connection token (JWT); called to connect, to refresh before `exp`, and after a 401 or a 4003 close. */
    getToken?: () => string | Promise<string>;
    /** A fixed token, when there is no getToken (it cannot be renewed). */
    token?: string;
    /** The WebSocket implementation; default: the global one, else the `ws` package. */
    WebSocket?: WebSocketConstructor;
    /** Reconnect delays: full jitter in [0, min(maxDelayMs, minDelayMs * 2^attempt)). Default 500 / 20000 ms. */
    backoff?: Partial<BackoffOptions>;
    /** After a 1001 close (drain), reconnect within [0, drainSpreadMs). Default 2000. */
    drainSpreadMs?: number;
    /** Time from opening the socket to the server's `connected` message. Default 10000. */
    connectTimeoutMs?: number;
    /** Refresh the token this long before its `exp` (at most half its lifetime). Default 60000. */
    refreshLeadMs?: number;
    /** Declare the link dead after twice the server's heartbeat_ms of silence. Default true. */
    deadLinkDetection?: boolean;
    /** Handshakes failing in a row, status unknown (browsers), before getToken is asked again. Default 3. */
    failuresBeforeNewToken?: number;
    /** Random source for the jitter (tests). Default Math.random. */
    random?: () => number;
}
export interface ConnectedEvent {
    conn: string;
    user?: string;
    heartbeatMs: number;
    /** Channels the server joined on connect (the token's `subscribe` claim). */
    channels: string[];
    /** False for the first connection, true for every reconnection. */
    reconnect: boolean;
}
export interface DisconnectedEvent {
    /** The close code (1006 when there was no close frame: network loss, dead link, refused handshake). */
    code: number;
    reason: string;
    /** Whether the client will connect again by itself. */
    reconnect: boolean;
    /** The delay before the next attempt, when reconnecting. */
    delayMs?: number;
}
export interface ClientEvents {
    state: ClientState;
    connected: ConnectedEvent;
    disconnected: DisconnectedEvent;
    /** Every problem, as a PushgateError (docs/clients.md lists the types). */
    error: PushgateError;
    /** Publications no Subscription takes: to all, to the user, to this connection, server-side subscriptions. */
    publication: Publication;
    /** The server accepted a refreshed token; `exp` in Unix seconds. */
    refreshed: {
        exp: number;
    };
    /** A message of a type this client does not know (a newer server). */
    message: UnknownMessage;
}
export interface ClientStats {
    /** Connections that reached `connected`. */
    connects: number;
    /** Of those, the ones after the first. */
    reconnects: number;
    /** Publications dropped because their offset had already been delivered. */
    duplicatesDropped: number;
}
export declare class PushgateClient extends Emitter<ClientEvents> implements SubscriptionOwner {
    readonly url: string;
    readonly stats: ClientStats;
    private readonly options;
    private readonly backoff;
    private readonly random;
    private readonly tokens;
    private readonly subs;
    /** Channels unsubscribed whose reply has not come: their publications are dropped quietly. */
    private readonly leaving;
    private readonly pending;
    private nextId;
    private currentState;
    private wanted;
    /** Bumped whenever a connection attempt is abandoned, so its async steps stop. */
    private generation;
    private ws?;
    private connectedOnSocket;
    private lastStatus?;
    private attempt;
    private failedHandshakes;
    private everConnected;
    private reconnectTimer;
    private connectTimer;
    private refreshTimer;
    private refreshing;
    private deadLink?;
    private networkListening;
    constructor(url: string, options?: PushgateClientOptions);
    get state(): ClientState;
    /** Starts connecting (and keeps reconnecting until disconnect()). */
    connect(): void;
    /** Closes the connection (1000) and stops reconnecting. Subscriptions are kept for the next connect(). */
    disconnect(): void;
    /**
     * Follows `channel`; `onPublication` (optional) is the subscription's first
     * `publication` listener. One Subscription per channel: subscribing again to a
     * followed channel throws.
     */
    subscribe(channel: string, onPublication?: Listener<Publication>, options?: SubscribeOptions): Subscription;
    getSubscription(channel: string): Subscription | undefined;
    subscriptions(): Subscription[];
    private open;
    private onSocketError;
    private onSocketClosed;
    /** Drops the current socket without waiting for its close handshake (dead link, offline, timeout). */
    private abandonSocket;
    /** After a failure before any socket (getToken): try again with backoff. */
    private retry;
    private schedule;
    private nextBackoff;
    private giveUp;
    /** Forgets the socket and everything tied to it. Its late events are ignored (this.ws !== ws). */
    private teardown;
    private onFrame;
    private onMessage;
    private onConnected;
    private deliver;
    private onErrorReply;
    private sendSubscribe;
    private send;
    private takePending;
    private scheduleRefresh;
    private refreshToken;
    private onRefreshed;
    /** After a failed refresh: again in half the time left (1-30 s); a 4003 close brings a new token anyway. */
    private retryRefreshLater;
    private readonly onOffline;
    private readonly onOnline;
    private listenToNetwork;
    private setState;
    private report;
    protected onListenerError(event: string, error: unknown): void;
}
