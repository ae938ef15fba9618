/**
 * Connection tokens: reading `exp` from a JWT (without verifying it: the gateway does)
 * and choosing when to refresh.
 */

/** The `exp` claim (Unix seconds) of a JWT, or undefined when it has none or is not a JWT. */
export function jwtExpiry(token: string): number | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const claims = JSON.parse(atob(padded)) as { exp?: unknown };
    return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp : undefined;
  } catch {
    return undefined;
  }
}

/**
 * When to refresh a token that expires at `expSec` and was received at `receivedMs`:
 * `leadMs` before expiry, but never earlier than half-way through its lifetime (a
 * short-lived token would otherwise be refreshed in a loop). Returns a time in ms.
 */
export function refreshAt(expSec: number, receivedMs: number, leadMs: number): number {
  const expMs = expSec * 1000;
  const lifetime = Math.max(expMs - receivedMs, 0);
  return expMs - Math.min(leadMs, lifetime / 2);
}

/**
 * The connection token: a fixed one, or one fetched through getToken and fetched
 * again when it nears expiry, after a 401, or after a 4003 close. Concurrent callers
 * of `get` share one getToken call.
 */
export class TokenSource {
  private readonly getToken?: () => string | Promise<string>;
  private readonly leadMs: number;
  private token?: string;
  private receivedMs = 0;
  private expSec?: number;
  private stale = false;
  private inFlight?: Promise<string>;

  constructor(fixed: string | undefined, getToken: (() => string | Promise<string>) | undefined, leadMs: number) {
    this.token = fixed;
    this.getToken = getToken;
    this.leadMs = leadMs;
    if (fixed) this.remember(fixed);
  }

  /** Whether tokens can be renewed (a getToken was given). */
  get renewable(): boolean {
    return this.getToken !== undefined;
  }

  /** The token's expiry (Unix seconds), when known. */
  get expiry(): number | undefined {
    return this.expSec;
  }

  /** The next connection must not reuse the current token (401, 4003). */
  markStale(): void {
    this.stale = true;
  }

  /** The token for a new connection: the current one while it is good, else a fresh one. */
  async forConnect(): Promise<string | undefined> {
    if (!this.getToken) return this.token;
    if (this.token !== undefined && !this.stale && !this.nearExpiry()) return this.token;
    return this.fetch();
  }

  /** A fresh token from getToken (shared by concurrent callers). Throws what getToken throws. */
  fetch(): Promise<string> {
    const getToken = this.getToken;
    if (!getToken) return Promise.reject(new Error("no getToken"));
    if (!this.inFlight) {
      this.inFlight = (async () => {
        try {
          const token = await getToken();
          if (typeof token !== "string" || token.length === 0) {
            throw new TypeError("getToken must return a non-empty string");
          }
          this.remember(token);
          return token;
        } finally {
          this.inFlight = undefined;
        }
      })();
    }
    return this.inFlight;
  }

  /** The server confirmed a refresh with this expiry. */
  refreshed(expSec: number): void {
    this.expSec = expSec;
  }

  /** When to refresh the current token (ms since the epoch), or undefined when it never expires as far as we know. */
  refreshDueMs(): number | undefined {
    if (!this.getToken || this.expSec === undefined) return undefined;
    return refreshAt(this.expSec, this.receivedMs, this.leadMs);
  }

  private nearExpiry(): boolean {
    const due = this.refreshDueMs();
    return due !== undefined && Date.now() >= due;
  }

  private remember(token: string): void {
    this.token = token;
    this.receivedMs = Date.now();
    this.expSec = jwtExpiry(token);
    this.stale = false;
  }
}
