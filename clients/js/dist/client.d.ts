import { Emitter, Listener } from "./emitter.js";
import { Publication } from "./frames.js";
import type { ClientEvents, ClientState, ClientStats, PushgateClientOptions } from "./options.js";
import { SubscribeOptions, Subscription } from "./subscription.js";
export declare class PushgateClient extends Emitter<ClientEvents> {
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
    /** When the last refresh command was sent (ms since the epoch). */
    private lastRefreshMs;
    private deadLink?;
    /** What subscriptions may call back into (kept off the public surface). */
    private readonly owner;
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
    private removeSubscription;
    private reportUnhandled;
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
    private readonly network;
    private listenToNetwork;
    private setState;
    private report;
    protected onListenerError(event: string, error: unknown): void;
}
