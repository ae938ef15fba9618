// Recovery in Chromium on one node with history: the page's connection is reset and
// refused while publications go on; after it comes back, every one is there once, in
// order. (The two-node version through Redis and haproxy is test/chaos/.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { sharedBrowser } from "../support/browser.mjs";
import { Gateway, historyToml } from "../support/gateway.mjs";
import { TcpProxy } from "../support/tcp-proxy.mjs";
import { pageClient } from "../support/page-client.mjs";

const browser = sharedBrowser();

test("Chromium: publications sent while the page is cut off arrive after it reconnects, once each, in order", async (t) => {
  const gw = await Gateway.start({ toml: historyToml() });
  t.after(() => gw.stop());
  const net = await new TcpProxy(gw.ports.ws).start();
  t.after(() => net.stop());
  const c = await pageClient(t, browser.context, browser.url, `ws://127.0.0.1:${net.port}/ws`, { backoff: { minDelayMs: 50, maxDelayMs: 300 } });
  await c.page.evaluate(() => {
    window.follow("chat:room");
    window.client.connect();
  });
  await c.until("subscribed", async () => (await c.subState("chat:room")) === "subscribed");
  for (let i = 1; i <= 10; i++) await gw.publish("channel=chat:room", `m${i}`);
  await c.until("10 live", async () => (await c.pubs("chat:room")).length === 10);
  net.refuse();
  net.killAll();
  await c.until("cut off", async () => (await c.state()) === "connecting");
  for (let i = 11; i <= 40; i++) await gw.publish("channel=chat:room", `m${i}`);
  net.open();
  await c.until("40 in all", async () => (await c.pubs("chat:room")).length >= 40, 15000);
  await gw.publish("channel=chat:room", "m41");
  await c.until("41", async () => (await c.pubs("chat:room")).length === 41);
  const got = await c.pubs("chat:room");
  assert.deepEqual(got.map((p) => p.data), Array.from({ length: 41 }, (_, i) => `m${i + 1}`));
  for (let i = 1; i < got.length; i++) assert.equal(got[i].offset, got[i - 1].offset + 1);
  const subscribed = await c.of("subscribed");
  assert.equal(subscribed.at(-1).recovered, true);
  assert.deepEqual(await c.of("unrecoverable"), []);
});
