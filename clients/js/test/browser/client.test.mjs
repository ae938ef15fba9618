// The library in headless Chromium against the real gateway: connect, subscribe,
// receive; token refresh and a refused handshake; drain, operator close, a frozen
// gateway (dead link: the browser never shows the server's pings), offline/online.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sharedBrowser } from "../support/browser.mjs";
import { Gateway } from "../support/gateway.mjs";
import { mintHs256, nowSec, SECRET } from "../support/jwt.mjs";
import { pageClient } from "../support/page-client.mjs";

const FAST = { minDelayMs: 50, maxDelayMs: 300 };
const browser = sharedBrowser();

async function subscribed(t, settings = {}, options = {}) {
  const gw = await Gateway.start({ settings });
  t.after(() => gw.stop());
  const c = await pageClient(t, browser.context, browser.url, gw.wsUrl, { backoff: FAST, ...options });
  await c.page.evaluate(() => {
    window.follow("news");
    window.client.connect();
  });
  await c.until("subscribed", async () => (await c.subState("news")) === "subscribed");
  return { gw, c };
}

async function receivesAgain(c, gw, connects = 2) {
  await c.until(`connection #${connects}, subscribed`, async () => (await c.stats()).connects >= connects && (await c.subState("news")) === "subscribed", 15000);
  const before = (await c.pubs("news")).length;
  await gw.publish("channel=news", `after #${connects}`);
  await c.until("a publication after the reconnect", async () => (await c.pubs("news")).length === before + 1);
}

test("Chromium: connect, subscribe, receive text and binary", async (t) => {
  const { gw, c } = await subscribed(t);
  await gw.publish("channel=news", "hello from the gateway");
  await gw.publish("channel=news", Buffer.from([1, 2, 3]), { binary: true });
  await c.until("two publications", async () => (await c.pubs("news")).length === 2);
  assert.deepEqual(await c.pubs("news"), [
    { data: "hello from the gateway", binary: false },
    { data: [1, 2, 3], binary: true },
  ]);
  assert.deepEqual(await c.of("state"), ["connecting", "connected"]);
  assert.deepEqual(await c.of("error"), []);
});

test("Chromium: the token is refreshed before exp; a refused handshake leads to a new token", async (t) => {
  const gw = await Gateway.start({
    settings: { auth_mode: "jwt", jwt_hs256_secret: SECRET, heartbeat_interval_ms: 1000, token_refresh_grace_ms: 500 },
  });
  t.after(() => gw.stop());
  let calls = 0;
  // The first token is signed with another key (401, which the browser cannot see: it
  // reports a failed connection); then 3 s tokens.
  const mint = () =>
    ++calls === 1
      ? mintHs256({ sub: "erin", exp: nowSec() + 60, channels: ["news"] }, "another-secret-another-secret-another!!")
      : mintHs256({ sub: "erin", exp: nowSec() + 3, channels: ["news"] });
  const c = await pageClient(t, browser.context, browser.url, gw.wsUrl, { backoff: FAST, refreshLeadMs: 1500, minRefreshIntervalMs: 1000, failuresBeforeNewToken: 1 }, mint);
  await c.page.evaluate(() => {
    window.follow("news");
    window.client.connect();
  });
  await c.until("subscribed", async () => (await c.subState("news")) === "subscribed");
  await c.until("three refreshes", async () => (await c.of("refreshed")).length >= 3, 15000);
  await gw.publish("channel=news", "after refreshes");
  await c.until("publication", async () => (await c.pubs("news")).length === 1);
  assert.equal((await c.stats()).connects, 1, "one connection outlived several tokens");
  const errors = await c.of("error");
  assert.ok(errors.some((e) => e.type === "transport"), "the refused handshake reached an error event");
  assert.ok(errors.every((e) => e.type === "transport"), JSON.stringify(errors));
});

test("Chromium: 1001 (drain) then the node back: reconnected and resubscribed", async (t) => {
  const { gw, c } = await subscribed(t, { drain_window_ms: 100, shutdown_grace_ms: 2000 }, { drainSpreadMs: 300 });
  await gw.drain();
  await c.until("1001", async () => (await c.of("disconnected")).some((d) => d.code === 1001));
  const gw2 = await Gateway.start({ ports: gw.ports });
  t.after(() => gw2.stop());
  await receivesAgain(c, gw2);
});

test("Chromium: 4008 from the server (gRPC Disconnect): reconnected and resubscribed", async (t) => {
  const { gw, c } = await subscribed(t);
  const conn = (await c.of("connected"))[0].conn;
  await gw.disconnect(conn, 4008, "slow");
  await c.until("4008", async () => (await c.of("disconnected")).some((d) => d.code === 4008 && d.reason === "slow"));
  await receivesAgain(c, gw);
});

test("Chromium: a frozen gateway is noticed by protocol pings (dead link), and left for a live one", async (t) => {
  const { gw, c } = await subscribed(t, { heartbeat_interval_ms: 1000, heartbeat_timeout_ms: 10000 }, { connectTimeoutMs: 1000 });
  const deadLinks = async () => (await c.of("error")).filter((e) => e.type === "dead_link").length;
  const before = await deadLinks();
  gw.signal("SIGSTOP");
  await c.until("dead_link", async () => (await deadLinks()) > before);
  gw.signal("SIGCONT");
  await receivesAgain(c, gw);
});

test("Chromium: offline drops the connection at once; online reconnects without waiting for the backoff", async (t) => {
  const { gw, c } = await subscribed(t, {}, { backoff: { minDelayMs: 60000, maxDelayMs: 60000 }, fixedRandom: 0.99 });
  await browser.context.setOffline(true);
  t.after(() => browser.context.setOffline(false));
  await c.until("dropped", async () => (await c.of("disconnected")).some((d) => d.reason === "browser offline"));
  assert.equal(await c.state(), "connecting");
  await browser.context.setOffline(false);
  // The backoff wait is 59.4 s (fixed jitter); "online" makes it try at once.
  await receivesAgain(c, gw);
});
