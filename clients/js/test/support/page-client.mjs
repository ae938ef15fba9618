// A PushgateClient inside a Chromium page, recording its events into window.rec, and
// helpers to read them from the test.
import { clientPage } from "./browser.mjs";
import { waitFor } from "./gateway.mjs";

/**
 * Opens a page with a client for `wsUrl` (not yet connected). `options` must be JSON;
 * `getToken: true` makes the page's getToken call `mint()` in the test (exposed function).
 */
export async function pageClient(t, context, serverUrl, wsUrl, options = {}, mint) {
  const page = await clientPage(context, serverUrl);
  t.after(() => page.close());
  if (mint) await page.exposeFunction("mintToken", mint);
  await page.evaluate(
    ({ wsUrl, options, withToken }) => {
      const { PushgateClient } = window.lib;
      const rec = (window.rec = { events: [], pubs: {} });
      if (withToken) options.getToken = () => window.mintToken();
      // JSON cannot carry a function: a fixed jitter is given as a number.
      if (options.fixedRandom !== undefined) options.random = () => options.fixedRandom;
      const client = (window.client = new PushgateClient(wsUrl, options));
      for (const name of ["state", "connected", "disconnected", "error", "refreshed", "publication"]) {
        client.on(name, (v) => rec.events.push({ name, v: name === "error" ? { type: v.type, message: v.message, code: v.code, status: v.status } : v }));
      }
      window.follow = (channel, subOptions) => {
        const sub = client.subscribe(
          channel,
          (p) => {
            const copy = { data: typeof p.data === "string" ? p.data : Array.from(p.data), binary: p.binary };
            if (p.offset !== undefined) copy.offset = p.offset;
            (rec.pubs[channel] ??= []).push(copy);
          },
          subOptions,
        );
        sub.on("unrecoverable", (e) => rec.events.push({ name: "unrecoverable", v: e }));
        sub.on("subscribed", (e) => rec.events.push({ name: "subscribed", v: { channel, ...e } }));
      };
    },
    { wsUrl, options, withToken: Boolean(mint) },
  );
  const of = async (name) => (await page.evaluate(() => window.rec.events)).filter((e) => e.name === name).map((e) => e.v);
  return {
    page,
    of,
    pubs: (channel) => page.evaluate((c) => window.rec.pubs[c] ?? [], channel),
    state: () => page.evaluate(() => window.client.state),
    stats: () => page.evaluate(() => ({ ...window.client.stats })),
    subState: (channel) => page.evaluate((c) => window.client.getSubscription(c)?.state, channel),
    /** Waits until `pred(page)` (async) holds; the page's recent events are in the failure. */
    until: (what, pred, timeoutMs = 10000) =>
      waitFor(what, () => pred(), timeoutMs, 50).catch(async (e) => {
        const events = await page.evaluate(() => window.rec.events.slice(-15)).catch(() => []);
        throw new Error(`${e.message}\nlast page events:\n  ${events.map((ev) => `${ev.name} ${JSON.stringify(ev.v)}`).join("\n  ")}\nconsole:\n  ${page.consoleLines.slice(-10).join("\n  ")}`);
      }),
  };
}
