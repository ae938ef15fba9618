// permessage-deflate with headless Chromium's own WebSocket (it offers the extension
// on every connection) against the real gateway with compression = "on": negotiated,
// a 2 KB JSON publication arrives intact and compressed (counted once), and a
// compressed command from the browser is answered.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sharedBrowser, clientPage } from "../support/browser.mjs";
import { Gateway, waitFor } from "../support/gateway.mjs";

const browser = sharedBrowser();

test("Chromium: permessage-deflate negotiated; a 2 KB publication arrives intact, compressed once", async (t) => {
  const gw = await Gateway.start({ settings: { compression: "on" } });
  t.after(() => gw.stop());
  const page = await clientPage(browser.context, browser.url);
  t.after(() => page.close());
  const extensions = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        window.got = [];
        ws.onmessage = (e) => window.got.push(JSON.parse(e.data));
        ws.onerror = () => reject(new Error("WebSocket error"));
        ws.onopen = () => {
          window.ws = ws;
          resolve(ws.extensions);
        };
      }),
    gw.wsUrl,
  );
  assert.match(extensions, /^permessage-deflate/);
  assert.match(extensions, /server_no_context_takeover/);
  assert.match(extensions, /client_no_context_takeover/);
  const rows = [];
  for (let i = 0; JSON.stringify(rows).length < 2000; i++) rows.push({ sym: `S${i % 31}`, bid: 100 + i / 8, ts: 1700000000000 + i });
  const data = JSON.stringify(rows);
  const frames0 = await gw.metric("pushgate_compressed_frames_total");
  await waitFor("the connected message", async () => (await page.evaluate(() => window.got.length)) === 1);
  await gw.publish("all=true", data);
  await waitFor("the publication", async () => (await page.evaluate(() => window.got.length)) === 2);
  assert.equal(await page.evaluate(() => window.got[1].data), data);
  assert.equal((await gw.metric("pushgate_compressed_frames_total")) - frames0, 1);
  // Chromium compresses what it sends once the extension is on: a padded subscribe.
  await page.evaluate(() =>
    window.ws.send(JSON.stringify({ type: "subscribe", channels: ["browser"], id: 9 }) + " ".repeat(2000)),
  );
  await waitFor("the subscribed reply", async () => (await page.evaluate(() => window.got.length)) === 3);
  const reply = await page.evaluate(() => window.got[2]);
  assert.equal(reply.type, "subscribed");
  assert.equal(reply.id, 9);
});
