/**
 * What the client does when its connection ends, by close code
 * (docs/protocol.md, "Close codes").
 */
export type CloseAction = 
/** 1001: the node drains or shuts down; reconnect soon, spread over a short window. */
"drain"
/** Reconnect with backoff and recover the missed publications. */
 | "reconnect"
/** 4003: the token expired; get a fresh one (getToken), then reconnect. */
 | "new-token"
/**
 * 1002/1007/1009: the server found this client at fault (protocol error, invalid
 * UTF-8, message too big). Doing the same again would end the same way: report it
 * and stop reconnecting.
 */
 | "stop";
export declare const CLOSE_NORMAL = 1000;
export declare const CLOSE_GOING_AWAY = 1001;
export declare const CLOSE_PROTOCOL_ERROR = 1002;
export declare const CLOSE_ABNORMAL = 1006;
export declare const CLOSE_INVALID_PAYLOAD = 1007;
export declare const CLOSE_POLICY = 1008;
export declare const CLOSE_TOO_BIG = 1009;
export declare const CLOSE_HEARTBEAT_TIMEOUT = 4001;
export declare const CLOSE_DISCONNECTED = 4002;
export declare const CLOSE_TOKEN_EXPIRED = 4003;
export declare const CLOSE_SLOW_CONSUMER = 4008;
export declare function closeAction(code: number): CloseAction;
