// Dead-link detection, token refresh before exp, and the browser's online/offline events.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, advance, connected, fakeJwt, FakeWebSocket, settle, T0 } from "../support/unit.mjs";

test("silence for heartbeat_ms: a protocol ping; for twice heartbeat_ms: dead link, reconnect", async (t) => {
  const { client, of } = setup(t);
  const ws = await connected(client, 1000);
  await advance(t, 999);
  assert.equal(ws.commands("ping").length, 0);
  await advance(t, 1);
  assert.equal(ws.commands("ping").length, 1);
  await advance(t, 999);
  assert.equal(client.state, "connected");
  await advance(t, 1);
  assert.equal(of("error").at(-1).type, "dead_link");
  assert.equal(client.state, "connecting");
  assert.equal(ws.closedWith.code, 4000);
  assert.deepEqual(of("disconnected").at(-1), { code: 1006, reason: "dead link", reconnect: true, delayMs: 250 });
  await advance(t, 250);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("any frame keeps the link alive; the pong answers the ping", async (t) => {
  const { client, of } = setup(t);
  const ws = await connected(client, 1000);
  for (let i = 0; i < 10; i++) {
    await advance(t, 900);
    ws.message({ type: "pub", data: "tick" });
  }
  assert.equal(ws.commands("ping").length, 0);
  await advance(t, 1000);
  const ping = ws.lastCommand("ping");
  await advance(t, 500);
  ws.message({ type: "pong", id: ping.id });
  await advance(t, 1400);
  assert.equal(client.state, "connected");
  assert.equal(ws.commands("ping").length, 2, "pinged again a heartbeat after the pong");
  assert.equal(of("error").length, 0);
});

test("deadLinkDetection: false never pings or drops", async (t) => {
  const { client } = setup(t, { deadLinkDetection: false });
  const ws = await connected(client, 1000);
  await advance(t, 10000);
  assert.equal(ws.commands("ping").length, 0);
  assert.equal(client.state, "connected");
});

// These tests run for fake minutes without server frames: dead-link detection is off.
test("the token is refreshed before exp (refresh command), and again after each refresh", async (t) => {
  let n = 0;
  const exp = () => T0 / 1000 + 600 + n * 600;
  const { client, of } = setup(t, { getToken: () => fakeJwt({ sub: "a", exp: exp(), n: ++n }), refreshLeadMs: 60000, deadLinkDetection: false });
  const ws = await connected(client);
  assert.equal(n, 1);
  await advance(t, 540000 - 1);
  assert.equal(ws.commands("refresh").length, 0);
  await advance(t, 1);
  assert.equal(n, 2);
  const r = ws.lastCommand("refresh");
  assert.equal(r.token.split(".").length, 3);
  ws.message({ type: "refreshed", exp: T0 / 1000 + 1200, id: r.id });
  assert.deepEqual(of("refreshed"), [{ exp: T0 / 1000 + 1200 }]);
  // The next refresh: 60 s before the new exp.
  await advance(t, (1200 - 60) * 1000 - 540000 - 1);
  assert.equal(ws.commands("refresh").length, 1);
  await advance(t, 1);
  assert.equal(ws.commands("refresh").length, 2);
});

test("a short-lived token is refreshed half-way, not in a loop", async (t) => {
  let n = 0;
  const { client } = setup(t, { getToken: () => fakeJwt({ sub: "a", exp: Math.floor(Date.now() / 1000) + 10, n: ++n }) });
  const ws = await connected(client);
  await advance(t, 4999);
  assert.equal(ws.commands("refresh").length, 0);
  await advance(t, 1);
  assert.equal(ws.commands("refresh").length, 1);
});

test("refreshes stay minRefreshIntervalMs apart, even when getToken hands out the same token", async (t) => {
  const same = fakeJwt({ sub: "a", exp: T0 / 1000 + 20 });
  const { client } = setup(t, { getToken: () => same, deadLinkDetection: false });
  const ws = await connected(client);
  // Half-way through its 20 s: the first refresh.
  await advance(t, 10000);
  const r = ws.lastCommand("refresh");
  assert.equal(ws.commands("refresh").length, 1);
  ws.message({ type: "refreshed", exp: T0 / 1000 + 20, id: r.id });
  // Due again at 15 s (half of what is left), but the server allows 5 a minute: at 22 s.
  await advance(t, 11999);
  assert.equal(ws.commands("refresh").length, 1);
  await advance(t, 1);
  assert.equal(ws.commands("refresh").length, 2);
});

test("token_expired from the server: refresh at once", async (t) => {
  let n = 0;
  const { client } = setup(t, { getToken: () => fakeJwt({ sub: "a", exp: T0 / 1000 + 3600, n: ++n }) });
  const ws = await connected(client);
  ws.message({ type: "token_expired", grace_ms: 30000 });
  await settle();
  assert.equal(n, 2);
  assert.equal(ws.commands("refresh").length, 1);
});

test("a refused refresh is an error event, tried again later", async (t) => {
  let n = 0;
  const { client, of } = setup(t, {
    getToken: () => fakeJwt({ sub: "a", exp: T0 / 1000 + 100, n: ++n }),
    deadLinkDetection: false, // the fake server sends no frames for minutes
  });
  const ws = await connected(client);
  await advance(t, 50000);
  const r = ws.lastCommand("refresh");
  ws.message({ type: "error", code: "refresh_failed", message: "token for another user", id: r.id });
  assert.equal(of("error").at(-1).type, "refresh_failed");
  await advance(t, 30000);
  assert.equal(ws.commands("refresh").length, 2);
});

test("a refresh that drops channels ends those subscriptions with an error", async (t) => {
  const { client } = setup(t, { getToken: () => fakeJwt({ sub: "a", exp: T0 / 1000 + 3600 }) });
  const sub = client.subscribe("vip");
  const errors = [];
  sub.on("error", (e) => errors.push(e));
  const ws = await connected(client);
  ws.message({ type: "token_expired", grace_ms: 30000 });
  await settle();
  ws.message({ type: "refreshed", exp: T0 / 1000 + 7200, unsubscribed: ["vip"], id: ws.lastCommand("refresh").id });
  assert.equal(sub.state, "unsubscribed");
  assert.equal(errors[0].type, "unsubscribed");
  ws.serverClose(1006);
  await advance(t, 250);
  FakeWebSocket.last().accept();
  assert.equal(FakeWebSocket.last().commands("subscribe").length, 0, "not subscribed again");
});

test("browser offline drops the socket; online reconnects at once", async (t) => {
  // A browser-like global event target for this test only.
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  t.after(() => {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  });
  const { client, of } = setup(t, { backoff: { minDelayMs: 10000, maxDelayMs: 10000 } });
  const ws = await connected(client);
  target.dispatchEvent(new Event("offline"));
  assert.equal(client.state, "connecting");
  assert.equal(of("disconnected").at(-1).reason, "browser offline");
  assert.equal(ws.closedWith.code, 4000);
  target.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(FakeWebSocket.instances.length, 2, "no wait for the 5 s backoff");
  client.disconnect();
  target.dispatchEvent(new Event("online"));
  await settle();
  assert.equal(FakeWebSocket.instances.length, 2, "listeners removed on disconnect");
});
