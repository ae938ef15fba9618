/**
 * Every problem the client meets reaches an `error` event as a PushgateError; `type`
 * says which kind (the table is in docs/clients.md).
 */
export type PushgateErrorType = 
/** The WebSocket reported an error (network, refused or failed handshake). */
"transport"
/** The handshake was refused with 401 (seen in Node with `ws`; browsers hide the status). */
 | "unauthorized"
/** getToken threw, or returned something that is not a non-empty string. */
 | "token"
/** The server refused a `refresh` (error reply `refresh_failed`). */
 | "refresh_failed"
/** The server closed with 1002, 1007 or 1009: the client stops reconnecting. */
 | "protocol"
/** Nothing arrived for twice the heartbeat interval: the link is declared dead. */
 | "dead_link"
/** No `connected` message within connectTimeoutMs of opening the socket. */
 | "connect_timeout"
/** A frame from the server could not be parsed. */
 | "bad_frame"
/** A subscribe was refused (forbidden, bad_channel, subscription_limit, ...). */
 | "subscribe_failed"
/** A token refresh dropped a subscription the new token does not allow. */
 | "unsubscribed"
/** A channel's history was lost or the gap could not be filled (no `unrecoverable` listener on its subscription). */
 | "unrecoverable"
/** An error reply that belongs to no command this client sent. */
 | "server"
/** No WebSocket implementation could be found, or the URL was refused. */
 | "setup"
/** A listener of this client or of a subscription threw. */
 | "listener";
export interface PushgateErrorDetails {
    /** The close code, or the server's error code (`forbidden`, ...). */
    code?: number | string;
    /** The HTTP status of a refused handshake, when known. */
    status?: number;
    /** The channel concerned. */
    channel?: string;
    /** The underlying exception. */
    cause?: unknown;
}
export declare class PushgateError extends Error {
    readonly type: PushgateErrorType;
    readonly code?: number | string;
    readonly status?: number;
    readonly channel?: string;
    readonly cause?: unknown;
    constructor(type: PushgateErrorType, message: string, details?: PushgateErrorDetails);
}
