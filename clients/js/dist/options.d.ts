/**
 * The client's options, events and counters (the public types of client.ts).
 */
import type { BackoffOptions } from "./backoff.js";
import type { PushgateError } from "./errors.js";
import type { Publication, UnknownMessage } from "./frames.js";
import type { WebSocketConstructor } from "./transport.js";
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
    /** Least time between two scheduled refreshes (the server allows max_refreshes_per_minute, 5). Default 12000. */
    minRefreshIntervalMs?: number;
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
