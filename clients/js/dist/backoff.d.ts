/**
 * Reconnect delays: exponential backoff with full jitter (a uniformly random delay
 * between 0 and the exponential bound), so clients that lost their connection at the
 * same moment do not come back at the same moment.
 */
export interface BackoffOptions {
    /** Bound of the first delay, and the base of the exponent (ms). Default 500. */
    minDelayMs: number;
    /** Largest delay ever waited (ms). Default 20000. */
    maxDelayMs: number;
}
export declare const DEFAULT_BACKOFF: BackoffOptions;
/**
 * The delay before reconnect attempt number `attempt` (0 for the first after a
 * connection was lost): uniform in [0, min(maxDelayMs, minDelayMs * 2^attempt)).
 */
export declare function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;
/**
 * The delay after the node closed with 1001 (draining or shutting down): soon, but
 * spread over [0, spreadMs) so a node's clients do not all arrive at the next node
 * in the same instant.
 */
export declare function drainDelay(spreadMs: number, random?: () => number): number;
