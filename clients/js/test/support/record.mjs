// Records a client's events for the integration tests, and a wait on a condition.
import { waitFor } from "./gateway.mjs";

const CLIENT_EVENTS = ["state", "connected", "disconnected", "error", "publication", "refreshed"];

export function record(client) {
  const events = [];
  for (const name of CLIENT_EVENTS) client.on(name, (value) => events.push({ name, value, at: Date.now() }));
  const of = (name) => events.filter((e) => e.name === name).map((e) => e.value);
  return {
    events,
    of,
    errors: () => of("error").map((e) => `${e.type}: ${e.message}`),
    /** Waits until `pred()` holds; on timeout the recorded events are in the message. */
    until: (what, pred, timeoutMs = 10000) =>
      waitFor(what, pred, timeoutMs).catch((e) => {
        const tail = events.slice(-15).map((ev) => `${ev.name} ${JSON.stringify(ev.value instanceof Error ? { type: ev.value.type, message: ev.value.message } : ev.value)}`);
        throw new Error(`${e.message}\nlast events:\n  ${tail.join("\n  ")}`);
      }),
  };
}

/** A subscription's received publications, as data strings. */
export function collect(sub) {
  const got = [];
  sub.on("publication", (p) => got.push(p));
  return got;
}
