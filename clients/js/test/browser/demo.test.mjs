// The live-feed example page in Chromium: it connects, its publish box goes through the
// dev server to the gateway's HTTP API and comes back over the WebSocket, and a
// publication from outside (the HTTP API) appears too. The screenshot is kept in
// clients/js/test-output/live-feed.png.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launch } from "../support/browser.mjs";
import { Gateway, historyToml } from "../support/gateway.mjs";
import { startDemoServer } from "../../../../examples/live-feed/server.mjs";

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../test-output");
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test("live-feed page: state, publish box, publications from outside; screenshot kept", async () => {
  // Channel "demo" keeps a history, as in make demo: the page shows offsets.
  const gw = await Gateway.start({ toml: historyToml("demo") });
  cleanups.push(() => gw.stop());
  const server = await startDemoServer({ gatewayHttp: gw.httpUrl, wsUrl: gw.wsUrl, channel: "demo" });
  cleanups.push(() => server.close());
  const browser = await launch();
  cleanups.push(() => browser.close());
  const page = await browser.context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(server.url);
  await page.waitForSelector('#state[data-state="connected"]', { timeout: 10000 });
  await page.waitForFunction(() => window.pushgateDemo.sub.state === "subscribed", null, { timeout: 10000 });

  await page.fill("#text", "Hello from the publish box");
  await page.press("#text", "Enter");
  await page.waitForSelector('#feed li:has-text("Hello from the publish box")', { timeout: 10000 });
  assert.match(await page.textContent("#publish-status"), /^published: #1 \(epoch \w+\), 1 local subscriber$/);
  assert.equal(await page.inputValue("#text"), "", "the box is cleared after publishing");

  await gw.publish("channel=demo", "Published with curl from a backend");
  await gw.publish("channel=demo", "A third one, from the HTTP API too");
  await page.waitForFunction(() => document.querySelectorAll("#feed li").length === 3, null, { timeout: 10000 });
  assert.equal(await page.textContent("#count"), "3");
  assert.equal(await page.textContent("#state"), "connected");
  assert.match(await page.textContent("#conn"), /^n1-\d+$/);
  // Newest first.
  assert.match(await page.textContent("#feed li:first-child"), /A third one/);

  mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, "live-feed.png");
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(statSync(file).size > 5000, "a real screenshot");
  assert.deepEqual(problems, []);
});
