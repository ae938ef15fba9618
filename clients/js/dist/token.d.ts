/**
 * Connection tokens: reading `exp` from a JWT (without verifying it: the gateway does)
 * and choosing when to refresh.
 */
/** The `exp` claim (Unix seconds) of a JWT, or undefined when it has none or is not a JWT. */
export declare function jwtExpiry(token: string): number | undefined;
/**
 * When to refresh a token that expires at `expSec` and was received at `receivedMs`:
 * `leadMs` before expiry, but never earlier than half-way through its lifetime (a
 * short-lived token would otherwise be refreshed in a loop). Returns a time in ms.
 */
export declare function refreshAt(expSec: number, receivedMs: number, leadMs: number): number;
/**
 * The connection token: a fixed one, or one fetched through getToken and fetched
 * again when it nears expiry, after a 401, or after a 4003 close. Concurrent callers
 * of `get` share one getToken call.
 */
export declare class TokenSource {
    private readonly getToken?;
    private readonly leadMs;
    private token?;
    private receivedMs;
    private expSec?;
    private stale;
    private inFlight?;
    constructor(fixed: string | undefined, getToken: (() => string | Promise<string>) | undefined, leadMs: number);
    /** Whether tokens can be renewed (a getToken was given). */
    get renewable(): boolean;
    /** The token's expiry (Unix seconds), when known. */
    get expiry(): number | undefined;
    /** The next connection must not reuse the current token (401, 4003). */
    markStale(): void;
    /** The token for a new connection: the current one while it is good, else a fresh one. */
    forConnect(): Promise<string | undefined>;
    /** A fresh token from getToken (shared by concurrent callers). Throws what getToken throws. */
    fetch(): Promise<string>;
    /** The server confirmed a refresh with this expiry. */
    refreshed(expSec: number): void;
    /** When to refresh the current token (ms since the epoch), or undefined when it never expires as far as we know. */
    refreshDueMs(): number | undefined;
    private nearExpiry;
    private remember;
}
