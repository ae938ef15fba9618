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

export const DEFAULT_BACKOFF: BackoffOptions = { minDelayMs: 500, maxDelayMs: 20_000 };

/**
 * The delay before reconnect attempt number `attempt` (0 for the first after a
 * connection was lost): uniform in [0, min(maxDelayMs, minDelayMs * 2^attempt)).
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(attempt, 0), 30);
  const bound = Math.min(options.maxDelayMs, options.minDelayMs * 2 ** exponent);
  return Math.floor(random() * bound);
}

/**
 * The delay after the node closed with 1001 (draining or shutting down): soon, but
 * spread over [0, spreadMs) so a node's clients do not all arrive at the next node
 * in the same instant.
 */
export function drainDelay(spreadMs: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.max(spreadMs, 0));
}
