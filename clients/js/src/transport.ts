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
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The subprotocol this client speaks (offered on every connection). */
export const SUBPROTOCOL = "pushgate.v1";

export const OPEN = 1;

/** Finds a WebSocket implementation: the given one, the global one, or the `ws` package. */
export async function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  // Node 20 has no global WebSocket: load the optional peer `ws`. The name is held in a
  // variable so that bundlers for browsers leave this import alone.
  const name = "ws";
  try {
    const mod = (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as {
      WebSocket?: WebSocketConstructor;
      default?: WebSocketConstructor;
    };
    const ctor = mod.WebSocket ?? mod.default;
    if (ctor) return ctor;
  } catch {
    // fall through to the error below
  }
  throw new Error("no WebSocket implementation: install the \"ws\" package (npm i ws) or pass options.WebSocket");
}

/**
 * The HTTP status of a refused handshake, when the implementation tells it (the `ws`
 * package: "Unexpected server response: 401"). Browsers never do.
 */
export function handshakeStatus(errorEvent: unknown): number | undefined {
  const e = errorEvent as { message?: unknown; error?: { message?: unknown } } | null;
  const text = [e?.message, e?.error?.message].find((m) => typeof m === "string") as string | undefined;
  const m = text ? /Unexpected server response: (\d{3})/.exec(text) : null;
  return m ? Number(m[1]) : undefined;
}

/** A short description of an error event, for the `error` event's message. */
export function describeErrorEvent(errorEvent: unknown): string {
  const e = errorEvent as { message?: unknown; error?: { message?: unknown } } | null;
  for (const m of [e?.message, e?.error?.message]) {
    if (typeof m === "string" && m.length > 0) return m;
  }
  return "WebSocket error";
}
