// Shared set-up of the unit tests: fake timers (setTimeout and Date), a FakeWebSocket,
// and a client whose jitter is fixed (random() = 0.5) so delays are exact.
import { PushgateClient } from "../../dist/pushgate.js";
import { FakeWebSocket, settle } from "./fake-websocket.mjs";

export const T0 = 1_700_000_000_000;

export function setup(t, options = {}) {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
  FakeWebSocket.reset();
  const events = [];
  const client = new PushgateClient("ws://gateway.test/ws", { WebSocket: FakeWebSocket, random: () => 0.5, ...options });
  for (const name of ["state", "connected", "disconnected", "error", "publication", "refreshed", "message"]) {
    client.on(name, (value) => events.push([name, value]));
  }
  const of = (name) => events.filter(([n]) => n === name).map(([, v]) => v);
  return { client, events, of, errors: () => of("error") };
}

/** Advances the fake clock by `ms` and lets the async steps it started finish. */
export async function advance(t, ms) {
  t.mock.timers.tick(ms);
  await settle();
}

/** connect() and accept the first socket; returns it. */
export async function connected(client, heartbeatMs = 25000) {
  client.connect();
  await settle();
  const ws = FakeWebSocket.last();
  ws.accept(heartbeatMs);
  return ws;
}

/** A JWT with these claims (unsigned: the client never verifies). */
export function fakeJwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.c2ln`;
}

export { FakeWebSocket, settle };
