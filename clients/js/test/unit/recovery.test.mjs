// Positions on history channels: `since` on resubscribe, each offset delivered once and
// in order, `unrecoverable` when the gap cannot be filled, `latest`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, advance, connected, FakeWebSocket } from "../support/unit.mjs";

const pub = (offset, data = `m${offset}`) => ({ type: "pub", channel: "chat:1", offset, data });

async function subscribedAt(t, epoch, offset, subOptions) {
  const ctx = setup(t);
  const got = [];
  const sub = ctx.client.subscribe("chat:1", (p) => got.push(p.offset), subOptions);
  const lost = [];
  sub.on("unrecoverable", (e) => lost.push(e));
  const ws = await connected(ctx.client);
  const cmd = ws.lastCommand("subscribe");
  ws.message({ type: "subscribed", channels: ["chat:1"], positions: { "chat:1": { epoch, offset } }, id: cmd.id });
  return { ...ctx, sub, got, lost, ws, cmd };
}

async function reconnect(t, ws, code = 4008) {
  ws.serverClose(code);
  await advance(t, 250);
  const next = FakeWebSocket.last();
  next.accept();
  return next;
}

test("resubscribe sends `since` with the last delivered offset; replayed duplicates are dropped", async (t) => {
  const { client, sub, got, ws } = await subscribedAt(t, "e1", 10);
  ws.message(pub(11));
  ws.message(pub(12));
  assert.deepEqual(sub.position, { epoch: "e1", offset: 12 });
  const ws2 = await reconnect(t, ws);
  const cmd = ws2.lastCommand("subscribe");
  assert.deepEqual(cmd.since, { "chat:1": { epoch: "e1", offset: 12 } });
  const subscribed = [];
  sub.on("subscribed", (e) => subscribed.push(e));
  ws2.message({ type: "subscribed", channels: ["chat:1"], positions: { "chat:1": { epoch: "e1", offset: 12 } }, recovered: ["chat:1"], id: cmd.id });
  // A replay that overlaps what already arrived, then the gap, then live ones.
  for (const o of [11, 12, 13, 14, 14, 15]) ws2.message(pub(o));
  assert.deepEqual(got, [11, 12, 13, 14, 15]);
  assert.equal(client.stats.duplicatesDropped, 3);
  assert.deepEqual(subscribed, [{ recovered: true, position: { epoch: "e1", offset: 12 } }]);
});

test("the recovered reply's offset may be the stream's top: the replay after it is not taken for duplicates", async (t) => {
  const { sub, got, ws } = await subscribedAt(t, "e1", 10);
  ws.message(pub(11));
  const ws2 = await reconnect(t, ws);
  const cmd = ws2.lastCommand("subscribe");
  ws2.message({ type: "subscribed", channels: ["chat:1"], positions: { "chat:1": { epoch: "e1", offset: 20 } }, recovered: ["chat:1"], id: cmd.id });
  for (let o = 12; o <= 21; o++) ws2.message(pub(o));
  assert.deepEqual(got, [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]);
  assert.deepEqual(sub.position, { epoch: "e1", offset: 21 });
});

test("unrecovered on resubscribe: `unrecoverable` with both positions; live ones continue from the new position", async (t) => {
  const { sub, got, lost, ws } = await subscribedAt(t, "e1", 10);
  ws.message(pub(11));
  const ws2 = await reconnect(t, ws);
  const cmd = ws2.lastCommand("subscribe");
  ws2.message({ type: "subscribed", channels: ["chat:1"], positions: { "chat:1": { epoch: "e2", offset: 3 } }, unrecovered: ["chat:1"], id: cmd.id });
  assert.deepEqual(lost, [{ channel: "chat:1", cause: "resubscribe", previous: { epoch: "e1", offset: 11 }, position: { epoch: "e2", offset: 3 } }]);
  assert.equal(sub.state, "subscribed");
  // Offsets of the new epoch are lower than the old ones: they are not duplicates.
  ws2.message(pub(4));
  assert.deepEqual(got, [11, 4]);
  assert.deepEqual(sub.position, { epoch: "e2", offset: 4 });
});

test("the server's `unrecoverable` message while subscribed: event, and the stream restarts at its offset", async (t) => {
  const { got, lost, ws } = await subscribedAt(t, "e1", 10);
  ws.message(pub(11));
  ws.message({ type: "unrecoverable", channel: "chat:1", epoch: "e9", offset: 0 });
  ws.message(pub(1));
  ws.message(pub(1));
  assert.deepEqual(lost, [{ channel: "chat:1", cause: "stream_lost", previous: { epoch: "e1", offset: 11 }, position: { epoch: "e9", offset: 0 } }]);
  assert.deepEqual(got, [11, 1]);
});

test("an epoch change not listed as unrecovered is still reported", async (t) => {
  const { lost, ws } = await subscribedAt(t, "e1", 10);
  const ws2 = await reconnect(t, ws);
  const cmd = ws2.lastCommand("subscribe");
  ws2.message({ type: "subscribed", channels: ["chat:1"], positions: { "chat:1": { epoch: "e2", offset: 0 } }, id: cmd.id });
  assert.equal(lost.length, 1);
});

test("no `unrecoverable` listener: the client's error event says so", async (t) => {
  const ctx = setup(t);
  ctx.client.subscribe("chat:1", () => {});
  const ws = await connected(ctx.client);
  ws.message({ type: "subscribed", channels: ["chat:1"], positions: { "chat:1": { epoch: "e1", offset: 0 } }, id: ws.lastCommand("subscribe").id });
  ws.message({ type: "unrecoverable", channel: "chat:1", epoch: "e2", offset: 0 });
  assert.equal(ctx.errors().at(-1).type, "unrecoverable");
});

test("binary publications with offsets are deduplicated too", async (t) => {
  const { got, ws } = await subscribedAt(t, "e1", 0);
  const frame = (o) => [0xff, 6, ...Buffer.from("chat:1"), 0, 0, 0, 0, 0, 0, 0, o, 0xab];
  ws.binary(frame(1));
  ws.binary(frame(1));
  ws.binary(frame(2));
  assert.deepEqual(got, [1, 2]);
});

test("latest: the first subscribe asks for it, and the newest kept publication is delivered", async (t) => {
  const { got, ws, cmd } = await subscribedAt(t, "e1", 7, { latest: true });
  assert.equal(cmd.latest, true);
  assert.equal(cmd.since, undefined);
  ws.message(pub(7));
  ws.message(pub(8));
  assert.deepEqual(got, [7, 8]);
  // A resubscribe recovers from the last offset instead of asking for `latest` again.
  const ws2 = await reconnect(t, ws);
  const again = ws2.lastCommand("subscribe");
  assert.equal(again.latest, undefined);
  assert.deepEqual(again.since, { "chat:1": { epoch: "e1", offset: 8 } });
});

test("latest and plain subscriptions go in separate commands", async (t) => {
  const { client } = setup(t);
  client.subscribe("a");
  client.subscribe("b", undefined, { latest: true });
  const ws = await connected(client);
  assert.deepEqual(
    ws.commands("subscribe").map((c) => [c.channels, c.latest]),
    [[["a"], undefined], [["b"], true]],
  );
});

test("subscribe with a `since` given by the application (state loaded elsewhere)", async (t) => {
  const { client } = setup(t);
  const got = [];
  client.subscribe("chat:1", (p) => got.push(p.offset), { since: { epoch: "e1", offset: 40 } });
  const ws = await connected(client);
  const cmd = ws.lastCommand("subscribe");
  assert.deepEqual(cmd.since, { "chat:1": { epoch: "e1", offset: 40 } });
  ws.message({ type: "subscribed", channels: ["chat:1"], positions: { "chat:1": { epoch: "e1", offset: 42 } }, recovered: ["chat:1"], id: cmd.id });
  for (const o of [41, 42, 43]) ws.message(pub(o));
  assert.deepEqual(got, [41, 42, 43]);
});

test("channels without history: no offsets, no dedup, and `since` is never invented", async (t) => {
  const { client } = setup(t);
  const got = [];
  client.subscribe("news", (p) => got.push(p.data));
  let ws = await connected(client);
  ws.message({ type: "subscribed", channels: ["news"], id: ws.lastCommand("subscribe").id });
  ws.message({ type: "pub", channel: "news", data: "x" });
  ws.message({ type: "pub", channel: "news", data: "x" });
  ws = await reconnect(t, ws);
  assert.equal(ws.lastCommand("subscribe").since, undefined);
  assert.deepEqual(got, ["x", "x"]);
});

test("publications arriving while the resubscribe is in flight are still deduplicated", async (t) => {
  const { got, ws } = await subscribedAt(t, "e1", 10);
  ws.message(pub(11));
  const ws2 = await reconnect(t, ws);
  ws2.message(pub(11));
  ws2.message(pub(12));
  assert.deepEqual(got, [11, 12]);
});
