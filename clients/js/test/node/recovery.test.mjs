// Recovery on history channels against the real gateway (docs/clients.md, "Recovery"):
// no publication lost or repeated across a reconnect, `unrecoverable` when the gap
// cannot be filled, `latest`, and a `since` the application gives.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { PushgateClient } from "../../dist/pushgate.js";
import { Gateway, historyToml } from "../support/gateway.mjs";
import { TcpProxy } from "../support/tcp-proxy.mjs";
import { record, collect } from "../support/record.mjs";

const FAST = { minDelayMs: 50, maxDelayMs: 300 };

/** A history gateway behind a proxy the test can cut, and a client subscribed to chat:1 through it. */
async function setup(t, { toml = historyToml(), subOptions } = {}) {
  const gw = await Gateway.start({ toml });
  t.after(() => gw.stop());
  const proxy = await new TcpProxy(gw.ports.ws).start();
  t.after(() => proxy.stop());
  const client = new PushgateClient(`ws://127.0.0.1:${proxy.port}/ws`, { WebSocket, backoff: FAST });
  t.after(() => client.disconnect());
  const rec = record(client);
  const sub = client.subscribe("chat:1", undefined, subOptions);
  const got = collect(sub);
  const subscribed = [];
  sub.on("subscribed", (e) => subscribed.push(e));
  const lost = [];
  sub.on("unrecoverable", (e) => lost.push(e));
  client.connect();
  await rec.until("subscribed", () => sub.state === "subscribed");
  return { gw, proxy, client, rec, sub, got, subscribed, lost };
}

const offsets = (pubs) => pubs.map((p) => p.offset);
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test("publications sent while the client is cut off are replayed on reconnect: each once, in order", async (t) => {
  const ctx = await setup(t);
  const base = ctx.subscribed[0].position.offset;
  for (let i = 1; i <= 5; i++) await ctx.gw.publish("channel=chat:1", `m${i}`);
  await ctx.rec.until("5 live", () => ctx.got.length === 5);
  // Cut: connections reset, new ones refused, while 20 more are published.
  ctx.proxy.refuse();
  ctx.proxy.killAll();
  await ctx.rec.until("disconnected", () => ctx.client.state === "connecting");
  for (let i = 6; i <= 25; i++) await ctx.gw.publish("channel=chat:1", `m${i}`);
  ctx.proxy.open();
  await ctx.rec.until("recovered, and 25 in all", () => ctx.got.length >= 25 && ctx.subscribed.length === 2);
  await ctx.gw.publish("channel=chat:1", "m26");
  await ctx.rec.until("26", () => ctx.got.length === 26);
  assert.deepEqual(offsets(ctx.got), range(base + 1, base + 26));
  assert.deepEqual(ctx.got.map((p) => p.data), range(1, 26).map((i) => `m${i}`));
  assert.equal(ctx.subscribed[1].recovered, true);
  assert.deepEqual(ctx.lost, []);
});

test("the node restarts without persistence (new epoch): `unrecoverable`, then live publications continue", async (t) => {
  const ctx = await setup(t);
  await ctx.gw.publish("channel=chat:1", "before");
  await ctx.rec.until("1", () => ctx.got.length === 1);
  const before = ctx.sub.position;
  await ctx.gw.drain();
  const gw2 = await Gateway.start({ toml: historyToml(), ports: ctx.gw.ports });
  t.after(() => gw2.stop());
  await ctx.rec.until("unrecoverable", () => ctx.lost.length === 1, 15000);
  assert.equal(ctx.lost[0].cause, "resubscribe");
  assert.deepEqual(ctx.lost[0].previous, before);
  assert.notEqual(ctx.lost[0].position.epoch, before.epoch);
  await gw2.publish("channel=chat:1", "after");
  await ctx.rec.until("live again", () => ctx.got.length === 2);
  assert.equal(ctx.got[1].data, "after");
});

test("a gap larger than the kept history: `unrecoverable`", async (t) => {
  const ctx = await setup(t, { toml: historyToml("chat:*", 5) });
  await ctx.gw.publish("channel=chat:1", "m1");
  await ctx.rec.until("1", () => ctx.got.length === 1);
  ctx.proxy.refuse();
  ctx.proxy.killAll();
  await ctx.rec.until("disconnected", () => ctx.client.state === "connecting");
  for (let i = 2; i <= 20; i++) await ctx.gw.publish("channel=chat:1", `m${i}`);
  ctx.proxy.open();
  await ctx.rec.until("unrecoverable", () => ctx.lost.length === 1);
  assert.equal(ctx.lost[0].cause, "resubscribe");
});

test("latest: a new subscriber gets the newest kept publication first, then live ones", async (t) => {
  const gw = await Gateway.start({ toml: historyToml() });
  t.after(() => gw.stop());
  for (let i = 1; i <= 3; i++) await gw.publish("channel=chat:prices", `p${i}`);
  const client = new PushgateClient(gw.wsUrl, { WebSocket });
  t.after(() => client.disconnect());
  const rec = record(client);
  const got = collect(client.subscribe("chat:prices", undefined, { latest: true }));
  client.connect();
  await rec.until("the latest", () => got.length === 1);
  await gw.publish("channel=chat:prices", "p4");
  await rec.until("live", () => got.length === 2);
  assert.deepEqual(got.map((p) => p.data), ["p3", "p4"]);
});

test("since given by the application (state loaded at a position elsewhere), then everything after it", async (t) => {
  const gw = await Gateway.start({ toml: historyToml() });
  t.after(() => gw.stop());
  // A first client reads the channel up to d3: its position stands for "state loaded at".
  const first = new PushgateClient(gw.wsUrl, { WebSocket });
  t.after(() => first.disconnect());
  const rec1 = record(first);
  const sub1 = first.subscribe("chat:doc");
  const got1 = collect(sub1);
  first.connect();
  await rec1.until("subscribed", () => sub1.state === "subscribed");
  for (let i = 1; i <= 3; i++) await gw.publish("channel=chat:doc", `d${i}`);
  await rec1.until("d1..d3", () => got1.length === 3);
  const loadedAt = sub1.position;
  first.disconnect();
  await gw.publish("channel=chat:doc", "d4");
  const client = new PushgateClient(gw.wsUrl, { WebSocket });
  t.after(() => client.disconnect());
  const rec = record(client);
  const sub = client.subscribe("chat:doc", undefined, { since: loadedAt });
  const got = collect(sub);
  const subscribed = [];
  sub.on("subscribed", (e) => subscribed.push(e));
  client.connect();
  await rec.until("d4 recovered", () => got.length === 1);
  await gw.publish("channel=chat:doc", "d5");
  await rec.until("d5 live", () => got.length === 2);
  assert.deepEqual(got.map((p) => p.data), ["d4", "d5"]);
  assert.equal(subscribed[0].recovered, true);
  assert.deepEqual(offsets(got), [loadedAt.offset + 1, loadedAt.offset + 2]);
});
