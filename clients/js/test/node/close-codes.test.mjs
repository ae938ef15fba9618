// What the client does for each way a real gateway ends a connection: drain (1001),
// heartbeat timeout (4001), operator (4002), slow consumer (4008), message too big
// (1009), a killed process (1006), a frozen process (dead link). Each test starts its
// own gateway and checks the client comes back subscribed (or, for 1009, stays away).
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { PushgateClient } from "../../dist/pushgate.js";
import { Gateway } from "../support/gateway.mjs";
import { record, collect } from "../support/record.mjs";

const FAST = { minDelayMs: 50, maxDelayMs: 300 };

/** A gateway, and a client subscribed to "c" on it. */
async function subscribedClient(t, settings = {}, clientOptions = {}) {
  const gw = await Gateway.start({ settings });
  t.after(() => gw.stop());
  const client = new PushgateClient(gw.wsUrl, { WebSocket, backoff: FAST, ...clientOptions });
  t.after(() => client.disconnect());
  const rec = record(client);
  const sub = client.subscribe("c");
  const got = collect(sub);
  client.connect();
  await rec.until("subscribed", () => sub.state === "subscribed");
  return { gw, client, rec, sub, got };
}

/** After a reconnect: subscribed again, and a publication arrives. */
async function receivesAgain({ client, rec, sub, got }, gw, connects = 2) {
  await rec.until(`connection #${connects}, subscribed`, () => client.stats.connects >= connects && sub.state === "subscribed", 15000);
  const before = got.length;
  await gw.publish("channel=c", `after #${connects}`);
  await rec.until("a publication after the reconnect", () => got.length === before + 1);
  assert.equal(got.at(-1).data, `after #${connects}`);
}

test("1001 (drain on SIGTERM): reconnect soon to the node that comes back, resubscribed", async (t) => {
  const ctx = await subscribedClient(t, { drain_window_ms: 100, shutdown_grace_ms: 2000 }, { drainSpreadMs: 300 });
  const exit = await ctx.gw.drain();
  assert.equal(exit.code, 0);
  await ctx.rec.until("disconnected with 1001", () => ctx.rec.of("disconnected").some((d) => d.code === 1001));
  const d = ctx.rec.of("disconnected").find((x) => x.code === 1001);
  assert.equal(d.reconnect, true);
  assert.ok(d.delayMs >= 0 && d.delayMs < 300, `drain delay ${d.delayMs} within drainSpreadMs`);
  const gw2 = await Gateway.start({ ports: ctx.gw.ports });
  t.after(() => gw2.stop());
  await receivesAgain(ctx, gw2);
});

test("4001 (heartbeat timeout: pings not answered): reconnect and resubscribe", async (t) => {
  // The first socket does not answer the server's pings, and the client sends no
  // protocol pings of its own (dead-link detection off), so the server reaps it.
  let sockets = 0;
  class FirstDeaf extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, ++sockets === 1 ? { autoPong: false } : {});
    }
  }
  const ctx = await subscribedClient(t, { heartbeat_interval_ms: 200, heartbeat_timeout_ms: 1000 }, { WebSocket: FirstDeaf, deadLinkDetection: false });
  await ctx.rec.until("closed with 4001", () => ctx.rec.of("disconnected").some((d) => d.code === 4001));
  await receivesAgain(ctx, ctx.gw);
});

for (const code of [4002, 4008]) {
  test(`${code} (gRPC Disconnect with this code): reconnect and resubscribe`, async (t) => {
    const ctx = await subscribedClient(t);
    await ctx.gw.disconnect(ctx.rec.of("connected")[0].conn, code, "by test");
    await ctx.rec.until(`closed with ${code}`, () => ctx.rec.of("disconnected").some((d) => d.code === code && d.reason === "by test"));
    await receivesAgain(ctx, ctx.gw);
  });
}

test("1009 (a command over max_message_bytes): reported, and the client stops", async (t) => {
  let sockets = 0;
  class Counted extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      sockets++;
    }
  }
  const gw = await Gateway.start({ settings: { max_message_bytes: 512 } });
  t.after(() => gw.stop());
  const client = new PushgateClient(gw.wsUrl, { WebSocket: Counted, backoff: { minDelayMs: 10, maxDelayMs: 20 } });
  t.after(() => client.disconnect());
  const rec = record(client);
  // 10 channels of 100 characters: one subscribe command of ~1.1 KB.
  for (let i = 0; i < 10; i++) client.subscribe(`${i}`.padStart(100, "x"));
  client.connect();
  await rec.until("disconnected", () => client.state === "disconnected" && rec.of("disconnected").length === 1);
  assert.deepEqual(rec.of("disconnected")[0], { code: 1009, reason: rec.of("disconnected")[0].reason, reconnect: false });
  const err = rec.of("error").find((e) => e.type === "protocol");
  assert.equal(err.code, 1009);
  // A reconnect would start within maxDelayMs (20 ms); none comes in 50 times that.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(sockets, 1);
  assert.equal(client.state, "disconnected");
});

test("1006 (the gateway is killed): backoff until it is back, then resubscribed", async (t) => {
  const ctx = await subscribedClient(t);
  ctx.gw.signal("SIGKILL");
  await ctx.gw.exit;
  await ctx.rec.until("disconnected with 1006", () => ctx.rec.of("disconnected").some((d) => d.code === 1006));
  // Attempts fail while nothing listens; each reaches an error event.
  await ctx.rec.until("a failed attempt", () => ctx.rec.of("error").some((e) => e.type === "transport"));
  const gw2 = await Gateway.start({ ports: ctx.gw.ports });
  t.after(() => gw2.stop());
  await receivesAgain(ctx, gw2);
});

test("dead link (the gateway process frozen): declared dead after 2x heartbeat, reconnected once it thaws", async (t) => {
  const ctx = await subscribedClient(t, { heartbeat_interval_ms: 1000, heartbeat_timeout_ms: 10000 }, { connectTimeoutMs: 1000 });
  const deadLinks = () => ctx.rec.of("error").filter((e) => e.type === "dead_link");
  const before = deadLinks().length;
  ctx.gw.signal("SIGSTOP");
  await ctx.rec.until("dead_link", () => deadLinks().length > before);
  assert.match(deadLinks().at(-1).message, /heartbeat 1000 ms/);
  // While frozen, attempts time out waiting for `connected`.
  await ctx.rec.until("a connect timeout", () => ctx.rec.of("error").some((e) => e.type === "connect_timeout"));
  ctx.gw.signal("SIGCONT");
  await receivesAgain(ctx, ctx.gw);
});
