/**
 * The WebSocket the client drives: the browser's, Node's global one (Node 22+), the
 * `ws` package (Node 20+, an optional peer dependency), or one passed in the options.
 * Only the standard surface is used (on* handlers, send, close, binaryType).
 */
/** The part of the standard WebSocket the client uses. */
export interface WebSocketLike {
    readonly readyState: number;
    binaryType: string;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
    onerror: ((event: unknown) => void) | null;
    onclose: ((event: {
        code: number;
        reason: string;
        wasClean?: boolean;
    }) => void) | null;
    send(data: string): void;
    close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/** The subprotocol this client speaks (offered on every connection). */
export declare const SUBPROTOCOL = "pushgate.v1";
export declare const OPEN = 1;
/** Finds a WebSocket implementation: the given one, the global one, or the `ws` package. */
export declare function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor>;
/**
 * The HTTP status of a refused handshake, when the implementation tells it (the `ws`
 * package: "Unexpected server response: 401"). Browsers never do.
 */
export declare function handshakeStatus(errorEvent: unknown): number | undefined;
/** A short description of an error event, for the `error` event's message. */
export declare function describeErrorEvent(errorEvent: unknown): string;
