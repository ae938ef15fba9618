// Node with the `ws` package against the real gateway: connect, subscribe, receive.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { PushgateClient } from "../../dist/pushgate.js";
import { Gateway } from "../support/gateway.mjs";
import { record, collect } from "../support/record.mjs";

const gw = await Gateway.start();
after(() => gw.stop());

test("connect, subscribe, receive text and binary publications", async (t) => {
  const client = new PushgateClient(gw.wsUrl, { WebSocket });
  t.after(() => client.disconnect());
  const rec = record(client);
  const sub = client.subscribe("news");
  const got = collect(sub);
  client.connect();
  await rec.until("subscribed", () => sub.state === "subscribed");
  assert.deepEqual(rec.of("state"), ["connecting", "connected"]);
  assert.match(rec.of("connected")[0].conn, /^n1-\d+$/);
  assert.ok(rec.of("connected")[0].heartbeatMs > 0);
  const reply = await gw.publish("channel=news", "hello");
  assert.equal(reply.enqueued, 1);
  await gw.publish("channel=news", Buffer.from([0, 1, 2, 255]), { binary: true });
  await rec.until("two publications", () => got.length === 2);
  assert.deepEqual(got[0], { channel: "news", data: "hello", binary: false });
  assert.equal(got[1].binary, true);
  assert.deepEqual([...got[1].data], [0, 1, 2, 255]);
  assert.deepEqual(rec.errors(), []);
});

test("publications to all and to the connection reach the client's publication event", async (t) => {
  const client = new PushgateClient(gw.wsUrl, { WebSocket });
  t.after(() => client.disconnect());
  const rec = record(client);
  client.connect();
  await rec.until("connected", () => client.state === "connected");
  const conn = rec.of("connected")[0].conn;
  await gw.publish("all=true", "everyone");
  await gw.publish(`conn=${conn}`, "just you");
  await rec.until("two publications", () => rec.of("publication").length === 2);
  assert.deepEqual(rec.of("publication").map((p) => [p.channel, p.data]), [
    [undefined, "everyone"],
    [undefined, "just you"],
  ]);
});

test("without options.WebSocket: the global WebSocket, or else the `ws` package, is found", async (t) => {
  const client = new PushgateClient(gw.wsUrl);
  t.after(() => client.disconnect());
  const rec = record(client);
  const got = collect(client.subscribe("auto"));
  client.connect();
  await rec.until("subscribed", () => client.getSubscription("auto").state === "subscribed");
  await gw.publish("channel=auto", "found");
  await rec.until("publication", () => got.length === 1);
  assert.equal(got[0].data, "found");
});

test("unsubscribe: publications stop; subscribing again works", async (t) => {
  const client = new PushgateClient(gw.wsUrl, { WebSocket });
  t.after(() => client.disconnect());
  const rec = record(client);
  const sub = client.subscribe("u1");
  const got = collect(sub);
  const other = collect(client.subscribe("u2"));
  client.connect();
  await rec.until("subscribed", () => sub.state === "subscribed" && client.getSubscription("u2").state === "subscribed");
  sub.unsubscribe();
  await gw.publish("channel=u1", "after unsubscribe");
  // A sentinel on another channel: publications are delivered in order, so once it is
  // here the one before it would have been too.
  await gw.publish("channel=u1&channel=u2", "sentinel");
  await rec.until("sentinel", () => other.length === 1);
  assert.deepEqual(got, []);
  assert.deepEqual(rec.of("publication"), []);
  const again = collect(client.subscribe("u1"));
  await rec.until("subscribed again", () => client.getSubscription("u1").state === "subscribed");
  await gw.publish("channel=u1", "back");
  await rec.until("publication", () => again.length === 1);
});

test("a subscribe the server refuses: the subscription ends with an error event, the others stay", async (t) => {
  const client = new PushgateClient(gw.wsUrl, { WebSocket, });
  t.after(() => client.disconnect());
  const rec = record(client);
  // 129 subscriptions with max_subscriptions_per_conn 128 (default): one is refused.
  const subs = Array.from({ length: 129 }, (_, i) => client.subscribe(`many-${i}`));
  client.connect();
  await rec.until("every subscribe answered", () => subs.every((s) => s.state !== "subscribing"));
  const failed = subs.filter((s) => s.state === "unsubscribed");
  assert.equal(failed.length, 1);
  assert.equal(rec.of("error").filter((e) => e.type === "subscribe_failed" && e.code === "subscription_limit").length, 1);
  assert.equal(client.state, "connected");
});
