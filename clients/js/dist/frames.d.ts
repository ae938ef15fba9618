/**
 * The server's frames (docs/protocol.md): JSON text messages and binary publications.
 * Parsing only; no state.
 */
/** A stream position: the epoch of a channel's history and an offset in it. */
export interface StreamPosition {
    epoch: string;
    offset: number;
}
/** A publication as delivered to listeners. */
export interface Publication {
    /** The channel it was published to; absent for publications to all, a user or a connection. */
    channel?: string;
    /** The payload: a string for text publications, bytes for binary ones. */
    data: string | Uint8Array;
    /** Whether the payload was published as binary (`data` is a Uint8Array). */
    binary: boolean;
    /** Position in the channel's history (history channels only). */
    offset?: number;
}
export type ServerMessage = {
    type: "connected";
    v: number;
    conn: string;
    user?: string;
    heartbeat_ms: number;
    channels?: string[];
} | {
    type: "pub";
    channel?: string;
    offset?: number;
    data: string;
} | {
    type: "subscribed";
    channels: string[];
    positions?: Record<string, StreamPosition>;
    recovered?: string[];
    unrecovered?: string[];
    id?: unknown;
} | {
    type: "unsubscribed";
    channels: string[];
    id?: unknown;
} | {
    type: "pong";
    id?: unknown;
} | {
    type: "error";
    code: string;
    message: string;
    id?: unknown;
} | {
    type: "refreshed";
    exp: number;
    unsubscribed?: string[];
    id?: unknown;
} | {
    type: "token_expired";
    grace_ms: number;
} | {
    type: "unrecoverable";
    channel: string;
    epoch: string;
    offset: number;
};
/** A message of a type this client does not know (a newer server): passed on as is. */
export interface UnknownMessage {
    type: string;
    [key: string]: unknown;
}
export declare class FrameError extends Error {
}
/** Parses one text frame from the server. Throws FrameError when it is not a JSON object with a `type`. */
export declare function parseText(text: string): ServerMessage | UnknownMessage;
/**
 * Parses one binary frame: `[len][channel][payload]`, or on a history channel
 * `[0xFF][len][channel][offset u64 big-endian][payload]`. `data` is a view into `bytes`.
 */
export declare function parseBinary(bytes: Uint8Array): Publication;
/** Why `name` is not a valid channel name, or undefined when it is (the server's rule). */
export declare function channelNameProblem(name: unknown): string | undefined;
