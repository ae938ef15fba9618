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

export type ServerMessage =
  | { type: "connected"; v: number; conn: string; user?: string; heartbeat_ms: number; channels?: string[] }
  | { type: "pub"; channel?: string; offset?: number; data: string }
  | {
      type: "subscribed";
      channels: string[];
      positions?: Record<string, StreamPosition>;
      recovered?: string[];
      unrecovered?: string[];
      id?: unknown;
    }
  | { type: "unsubscribed"; channels: string[]; id?: unknown }
  | { type: "pong"; id?: unknown }
  | { type: "error"; code: string; message: string; id?: unknown }
  | { type: "refreshed"; exp: number; unsubscribed?: string[]; id?: unknown }
  | { type: "token_expired"; grace_ms: number }
  | { type: "unrecoverable"; channel: string; epoch: string; offset: number };

/** A message of a type this client does not know (a newer server): passed on as is. */
export interface UnknownMessage {
  type: string;
  [key: string]: unknown;
}

export class FrameError extends Error {}

/** Parses one text frame from the server. Throws FrameError when it is not a JSON object with a `type`. */
export function parseText(text: string): ServerMessage | UnknownMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new FrameError(`not JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || typeof (value as { type?: unknown }).type !== "string") {
    throw new FrameError("not a JSON object with a string \"type\"");
  }
  const m = value as Record<string, unknown>;
  const bad = (what: string) => new FrameError(`"${m.type}" message: ${what}`);
  switch (m.type) {
    case "connected":
      if (typeof m.heartbeat_ms !== "number" || typeof m.conn !== "string") throw bad("no conn or heartbeat_ms");
      break;
    case "pub":
      if (typeof m.data !== "string") throw bad("data is not a string");
      if (m.offset !== undefined && !isOffset(m.offset)) throw bad("offset is not a non-negative integer");
      break;
    case "subscribed":
    case "unsubscribed":
      if (!Array.isArray(m.channels)) throw bad("channels is not a list");
      break;
    case "error":
      if (typeof m.code !== "string") throw bad("no code");
      break;
    case "refreshed":
      if (typeof m.exp !== "number") throw bad("no exp");
      break;
    case "unrecoverable":
      if (typeof m.channel !== "string" || typeof m.epoch !== "string" || !isOffset(m.offset)) {
        throw bad("needs channel, epoch and offset");
      }
      break;
  }
  return m as ServerMessage | UnknownMessage;
}

function isOffset(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

/** Marks a binary publication on a history channel (a channel-name length is at most 128). */
const WITH_OFFSET = 0xff;

/**
 * Parses one binary frame: `[len][channel][payload]`, or on a history channel
 * `[0xFF][len][channel][offset u64 big-endian][payload]`. `data` is a view into `bytes`.
 */
export function parseBinary(bytes: Uint8Array): Publication {
  if (bytes.length < 1) throw new FrameError("empty binary frame");
  let at = 0;
  const hasOffset = bytes[0] === WITH_OFFSET;
  if (hasOffset) at = 1;
  if (bytes.length < at + 1) throw new FrameError("binary frame ends before the channel length");
  const len = bytes[at];
  at += 1;
  if (bytes.length < at + len) throw new FrameError("binary frame ends inside the channel name");
  const channel = len > 0 ? String.fromCharCode(...bytes.subarray(at, at + len)) : undefined;
  at += len;
  const pub: Publication = { data: new Uint8Array(0), binary: true };
  if (channel !== undefined) pub.channel = channel;
  if (hasOffset) {
    if (bytes.length < at + 8) throw new FrameError("binary frame ends inside the offset");
    const view = new DataView(bytes.buffer, bytes.byteOffset + at, 8);
    // Two halves instead of BigInt: exact up to 2^53, far beyond any real offset.
    pub.offset = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
    at += 8;
  }
  pub.data = bytes.subarray(at);
  return pub;
}

const CHANNEL_CHARS = /^[A-Za-z0-9_\-.:@/=]{1,128}$/;

/** Why `name` is not a valid channel name, or undefined when it is (the server's rule). */
export function channelNameProblem(name: unknown): string | undefined {
  if (typeof name !== "string") return "a channel name must be a string";
  if (CHANNEL_CHARS.test(name)) return undefined;
  if (name.length === 0 || name.length > 128) return `channel ${JSON.stringify(name)}: length must be 1-128`;
  return `channel ${JSON.stringify(name)}: only ASCII letters, digits and _ - . : @ / = are allowed`;
}
