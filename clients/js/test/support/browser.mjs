// Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by
// playwright-core (which never downloads a browser), one fresh profile per launch.
import { before, after } from "node:test";
import { chromium } from "playwright-core";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startStaticServer } from "./static-server.mjs";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Launches Chromium with a fresh profile; returns { context, close() }. */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: run clients/js/test/deps.sh (apt-get install chromium)`);
  }
  const profile = mkdtempSync(path.join(os.tmpdir(), "pushgate-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 900, height: 700 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Chromium and the pages' origin (static-server.mjs) for the tests of one file: started
 * before the first test, stopped after the last. Returns `{ context, url }` (the browser
 * context, the origin's URL), filled in once started.
 */
export function sharedBrowser() {
  const shared = { context: null, url: null };
  let browser;
  let server;
  before(async () => {
    browser = await launch();
    server = await startStaticServer();
    shared.context = browser.context;
    shared.url = server.url;
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });
  return shared;
}

/** A page of `serverUrl`'s origin (static-server.mjs: / and /pushgate.js) with the library as window.lib. */
export async function clientPage(context, serverUrl) {
  const page = await context.newPage();
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(serverUrl);
  await page.evaluate(async () => {
    window.lib = await import("/pushgate.js");
  });
  page.consoleLines = consoleLines;
  return page;
}
