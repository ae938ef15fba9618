// pusher-js and Laravel Echo (its Pusher connector) in headless Chromium: Debian's
// /usr/bin/chromium driven by playwright-core, which never downloads a browser. The
// page, the libraries and the auth endpoint come from one origin (support.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startGateway, startAuthServer, mapped, waitFor } from "./support.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const WAIT = 15000;
let gw;
let auth;
let browser;
let profile;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (tests/pusher/run.sh does)`);
  gw = await startGateway();
  auth = await startAuthServer();
  profile = mkdtempSync(path.join(os.tmpdir(), "pushgate-pusher-chromium-"));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await gw?.stop();
  await auth?.close();
});

async function page() {
  const p = await browser.newPage();
  const lines = [];
  p.on("console", (m) => lines.push(`${m.type()}: ${m.text()}`));
  p.on("pageerror", (e) => lines.push(`pageerror: ${e.message}`));
  p.lines = lines;
  await p.goto(auth.base + "/");
  await p.evaluate((ws) => {
    window.WSPORT = ws;
    window.got = [];
  }, gw.ports.ws);
  return p;
}

/** Waits until the page's `window.got` has an entry matching `pred` (evaluated in Node). */
async function pageGot(p, what, pred) {
  return waitFor(what, async () => (await p.evaluate(() => window.got)).find(pred), WAIT).catch((e) => {
    throw new Error(`${e.message}\npage console:\n${p.lines.join("\n")}`);
  });
}

test("pusher-js in Chromium: private and presence channels, publications", async () => {
  const p = await page();
  await p.evaluate(() => {
    const opts = {
      cluster: "local", wsHost: "127.0.0.1", wsPort: window.WSPORT, forceTLS: false,
      enabledTransports: ["ws"], disableStats: true,
      channelAuthorization: { endpoint: "/pusher/auth?user=erin", transport: "ajax" },
    };
    window.client = new Pusher("app-key", opts);
    const priv = window.client.subscribe("private-feed");
    priv.bind("pusher:subscription_succeeded", () => window.got.push({ ok: "private-feed" }));
    priv.bind("pushgate:publication", (d) => window.got.push({ pub: d }));
    const room = window.client.subscribe("presence-lobby");
    room.bind("pusher:subscription_succeeded", (m) => window.got.push({ members: m.count, me: m.me.id }));
  });
  await pageGot(p, "private subscription", (g) => g.ok === "private-feed");
  const members = await pageGot(p, "presence subscription", (g) => g.members !== undefined);
  assert.deepEqual(members, { members: 1, me: "erin" });
  await gw.publish(`channel=${mapped("private-feed")}`, "to the browser");
  await pageGot(p, "the publication", (g) => g.pub === "to the browser");
  await p.close();
});

test("Laravel Echo (Pusher connector) in Chromium: listen, whisper, presence", async () => {
  const p = await page();
  await p.evaluate(() => {
    const make = (user) =>
      new Echo.default({
        broadcaster: "pusher", key: "app-key", cluster: "local",
        wsHost: "127.0.0.1", wsPort: window.WSPORT, forceTLS: false,
        enabledTransports: ["ws"], disableStats: true,
        authEndpoint: `/pusher/auth?user=${user}`,
      });
    window.e1 = make("frank");
    window.e2 = make("gina");
    window.e1.private("orders")
      .listen(".OrderShipped", (e) => window.got.push({ shipped: e.id }))
      .listenForWhisper("typing", (e) => window.got.push({ whisper: e.who }));
    window.e1.join("team")
      .here((users) => window.got.push({ here: users.map((u) => u.name) }))
      .joining((u) => window.got.push({ joining: u.name }));
  });
  await pageGot(p, "here", (g) => g.here);
  await waitFor("Echo's private subscription", () =>
    p.evaluate(() => window.e1.connector.pusher.channel("private-orders")?.subscribed === true), WAIT);
  // A backend event in Pusher's envelope, through pushgate.v1's HTTP publish.
  await gw.publish(`channel=${mapped("private-orders")}`, JSON.stringify({ event: "OrderShipped", data: JSON.stringify({ id: 42 }) }));
  await pageGot(p, "OrderShipped", (g) => g.shipped === 42);
  // The second client joins the presence channel and whispers on the private one.
  await p.evaluate(() => {
    window.e2.join("team");
    const ch = window.e2.private("orders");
    window.e2.connector.pusher.channel("private-orders").bind("pusher:subscription_succeeded", () => ch.whisper("typing", { who: "gina" }));
  });
  await pageGot(p, "joining", (g) => g.joining === "user gina");
  await pageGot(p, "whisper", (g) => g.whisper === "gina");
  await p.close();
});
