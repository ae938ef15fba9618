// Server-Sent Events in Chromium: the browser's own EventSource (no pushgate library)
// against the real gateway, from a page of another origin (CORS): receive; a reconnect
// with Last-Event-ID gets exactly the missed publications; a token refusal (401) stops
// it; a stream that does not read is closed by the slow-consumer policy while the page
// keeps receiving.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { sharedBrowser, clientPage } from "../support/browser.mjs";
import { Gateway, historyToml, waitFor } from "../support/gateway.mjs";
import { TcpProxy } from "../support/tcp-proxy.mjs";

const browser = sharedBrowser();

/** A page whose EventSource on `url` records every event of `types` (and errors) into window.rec. */
async function sourcePage(t, url, types) {
  const page = await clientPage(browser.context, browser.url);
  t.after(() => page.close());
  await page.evaluate(
    ({ url, types }) => {
      const rec = (window.rec = { events: [], errors: 0, opens: 0 });
      const es = (window.es = new EventSource(url));
      es.onopen = () => rec.opens++;
      es.onerror = () => rec.errors++;
      for (const type of types) {
        es.addEventListener(type, (e) => rec.events.push({ type, data: e.data, id: e.lastEventId }));
      }
    },
    { url, types },
  );
  const events = (type) => page.evaluate((type) => window.rec.events.filter((e) => e.type === type), type);
  return { page, events, rec: () => page.evaluate(() => ({ ...window.rec, readyState: window.es.readyState })) };
}

test("Chromium EventSource: receives channel publications, multi-line and broadcast ones", async (t) => {
  const gw = await Gateway.start();
  t.after(() => gw.stop());
  const p = await sourcePage(t, `http://127.0.0.1:${gw.ports.ws}/sse?channel=news`, ["#connected", "#subscribed", "news", "message"]);
  await waitFor("subscribed", async () => (await p.events("#subscribed")).length === 1);
  await gw.publish("channel=news", "one\ntwo");
  await gw.publish("all=true", "to all");
  await waitFor("two events", async () => (await p.events("news")).length === 1 && (await p.events("message")).length === 1);
  assert.equal((await p.events("news"))[0].data, "one\ntwo");
  assert.equal((await p.events("message"))[0].data, "to all");
  assert.equal(await gw.metric("pushgate_sse_connections"), 1);
});

test("Chromium EventSource: after a cut it reconnects with Last-Event-ID and gets exactly the missed publications", async (t) => {
  const gw = await Gateway.start({ toml: historyToml() });
  t.after(() => gw.stop());
  const net_ = await new TcpProxy(gw.ports.ws).start();
  t.after(() => net_.stop());
  const p = await sourcePage(t, `http://127.0.0.1:${net_.port}/sse?channel=chat:room`, ["#subscribed", "chat:room", "#unrecoverable"]);
  await waitFor("subscribed", async () => (await p.events("#subscribed")).length === 1);
  for (let i = 1; i <= 5; i++) await gw.publish("channel=chat:room", `m${i}`);
  await waitFor("5 live", async () => (await p.events("chat:room")).length === 5);
  net_.refuse();
  net_.killAll();
  await waitFor("the stream is gone", async () => (await gw.metric("pushgate_sse_connections")) === 0);
  for (let i = 6; i <= 15; i++) await gw.publish("channel=chat:room", `m${i}`);
  net_.open();
  await waitFor("15 in all", async () => (await p.events("chat:room")).length >= 15, 20000);
  await gw.publish("channel=chat:room", "m16");
  await waitFor("16", async () => (await p.events("chat:room")).length === 16);
  const got = await p.events("chat:room");
  assert.deepEqual(got.map((e) => e.data), Array.from({ length: 16 }, (_, i) => `m${i + 1}`));
  // Each id is the channel's position: offsets rise by one.
  assert.deepEqual(got.map((e) => Number(e.id.split(":").pop())), Array.from({ length: 16 }, (_, i) => i + 1));
  const subscribed = await p.events("#subscribed");
  assert.equal(subscribed.length, 2, "one #subscribed per connection");
  assert.deepEqual(JSON.parse(subscribed[1].data).recovered, ["chat:room"]);
  assert.deepEqual(await p.events("#unrecoverable"), []);
});

test("Chromium EventSource: a stream without a valid token is refused (401) and not retried", async (t) => {
  const gw = await Gateway.start({ settings: { auth_mode: "jwt", jwt_hs256_secret: "sse-test-secret-sse-test-secret-0123" } });
  t.after(() => gw.stop());
  const p = await sourcePage(t, `http://127.0.0.1:${gw.ports.ws}/sse?channel=news&token=bad`, ["#connected"]);
  await waitFor("closed", async () => (await p.rec()).readyState === 2);
  const r = await p.rec();
  assert.equal(r.opens, 0);
  assert.deepEqual(r.events, []);
  assert.equal(await gw.metric("pushgate_handshake_refused_total", 'status="401"'), 1);
});

test("Chromium EventSource keeps receiving while a stream that does not read is closed as a slow consumer", async (t) => {
  const gw = await Gateway.start({ settings: { queue_max_frames: 64, queue_max_bytes: 262144 } });
  t.after(() => gw.stop());
  const p = await sourcePage(t, `http://127.0.0.1:${gw.ports.ws}/sse?channel=feed`, ["#subscribed", "feed"]);
  await waitFor("subscribed", async () => (await p.events("#subscribed")).length === 1);
  // A raw socket that asks for the stream and never reads it.
  const slow = net.connect(gw.ports.ws, "127.0.0.1");
  t.after(() => slow.destroy());
  slow.on("error", () => {});
  slow.pause();
  await new Promise((r) => slow.once("connect", r));
  slow.write("GET /sse?channel=feed HTTP/1.1\r\nHost: x\r\n\r\n");
  await waitFor("two streams", async () => (await gw.metric("pushgate_sse_connections")) === 2);
  // 400 × 48 KiB, more than the kernel buffers of a socket that is not read hold. The
  // page is kept within 4 publications (192 KiB, under its 256 KiB queue), so that it
  // cannot be the slow one however busy the machine is.
  const body = "x".repeat(48 * 1024);
  const received = () => p.page.evaluate(() => window.rec.events.filter((e) => e.type === "feed").length);
  for (let i = 0; i < 400; i++) {
    await gw.publish("channel=feed", `${body}#${i}`);
    if (i % 4 === 3) await waitFor(`the page has ${i + 1}`, async () => (await received()) === i + 1, 20000);
  }
  await waitFor("the slow one is closed", async () => (await gw.metric("pushgate_connections_closed_total", 'reason="slow_consumer"')) === 1, 20000);
  const tails = await p.page.evaluate(() => window.rec.events.filter((e) => e.type === "feed").map((e) => e.data.slice(e.data.indexOf("#"))));
  assert.deepEqual(tails, Array.from({ length: 400 }, (_, i) => `#${i}`));
  assert.equal((await p.rec()).errors, 0, "the page's stream never broke");
});
