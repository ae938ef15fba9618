// Chaos, in the browser (docs/clients.md, "The chaos test"): two nodes joined through
// Redis (appendonly yes, appendfsync always) behind haproxy; the page (Chromium) follows a
// history channel through haproxy. A publisher sends one message every 10 ms for 30 s
// through the other node (the one the page was not on at the start), while the test, on
// the node the page is on at that moment:
//   1. drains it (SIGTERM: 1001 to its clients, exit),
//   2. restarts it on the same ports,
//   3. kills its client connections (TCP closed under them, no close frame),
//   4. blocks its network for 2 s: every byte to and from it (its WebSocket traffic from
//      haproxy, haproxy's health checks and publishers on its HTTP port, its Redis link),
//      new connections too, is held by relays the test controls (node-net.mjs), then let go;
// and then 5. blocks the publisher's node's network the same way for 2 s.
// The publisher is a correct one: each message has an Idempotency-Key and is sent again
// until a node accepts it (a 2 s block may hit the publisher's node), so every message is
// accepted once. The page must end with every accepted message exactly once, in order,
// with consecutive offsets and no `unrecoverable`. Prints the reconnect count, the
// longest gap between two arrivals in the page, and the machine's load.
//
// It can fail: CHAOS_WITHOUT_HISTORY=1 runs it on a channel without history (nothing is
// replayed), and it fails listing what the page missed.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import os from "node:os";
import { launch } from "../support/browser.mjs";
import { Gateway, historyToml, waitFor } from "../support/gateway.mjs";
import { Haproxy } from "../support/haproxy.mjs";
import { NodeNet } from "../support/node-net.mjs";
import { Redis } from "../support/redis.mjs";
import { pageClient } from "../support/page-client.mjs";
import { startStaticServer } from "../support/static-server.mjs";

const withoutHistory = process.env.CHAOS_WITHOUT_HISTORY === "1";
const PERIOD_MS = Number(process.env.CHAOS_PERIOD_MS ?? 10);
const DURATION_MS = Number(process.env.CHAOS_DURATION_MS ?? 30000);
const BLOCK_MS = 2000;
const COUNT = Math.floor(DURATION_MS / PERIOD_MS);
const CHANNEL = "chaos:feed";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

test(`chaos: ${COUNT} publications through drain, restart, killed connections and two ${BLOCK_MS / 1000} s network blocks arrive once each, in order`, { timeout: Number(process.env.CHAOS_TIMEOUT_MS ?? DURATION_MS * 4 + 120000) }, async (t) => {
  const load0 = os.loadavg()[0];
  const redis = await Redis.start({ appendfsync: "always" });
  cleanups.push(() => redis.stop());
  const toml = withoutHistory ? "" : historyToml("chaos:*", 10000, 600000);
  const settings = (net) => ({
    broker: "redis",
    redis_url: net.redisUrl,
    drain_window_ms: 1000,
    shutdown_grace_ms: 5000,
    heartbeat_interval_ms: 1000,
  });
  const nets = {};
  const nodes = {};
  for (const id of ["n1", "n2"]) {
    nets[id] = await NodeNet.toRedis(redis.port);
    cleanups.push(() => nets[id].stop());
    nodes[id] = await Gateway.start({ settings: settings(nets[id]), toml, nodeId: id });
    cleanups.push(() => nodes[id].stop());
    await nets[id].front(nodes[id]);
  }
  const lb = await Haproxy.start([nets.n1, nets.n2]);
  cleanups.push(() => lb.stop());
  const browser = await launch();
  cleanups.push(() => browser.close());
  const server = await startStaticServer();
  cleanups.push(() => server.close());

  const c = await pageClient(t, browser.context, server.url, lb.wsUrl, {
    backoff: { minDelayMs: 100, maxDelayMs: 2000 },
    drainSpreadMs: 500,
    connectTimeoutMs: 3000,
  });
  await c.page.evaluate((channel) => {
    window.follow(channel);
    window.arrivals = [];
    window.drops = [];
    window.client.on("disconnected", (d) => window.drops.push([d.code, Date.now()]));
    window.client.getSubscription(channel).on("publication", () => window.arrivals.push(performance.now()));
    window.client.connect();
  }, CHANNEL);
  await c.until("subscribed", async () => (await c.subState(CHANNEL)) === "subscribed");
  const pageNode = async () => (await c.of("connected")).at(-1).conn.split("-")[0];
  const first = await pageNode();
  const pubNode = first === "n1" ? "n2" : "n1";
  t.diagnostic(`page on ${first}, publisher on ${pubNode}`);

  // The publisher: message i is sent at t0 + i * PERIOD_MS whatever happened to the
  // earlier ones (at most MAX_IN_FLIGHT unanswered), through pubNode's HTTP port, and sent
  // again with the same key until accepted (a retry of an accepted one is answered
  // "duplicate" with the first attempt's position). Replies may come in any order: the
  // order a message was accepted in is its offset, which every reply carries.
  const MAX_IN_FLIGHT = 16;
  const offsetOf = new Map(); // message -> offset from its accepting reply
  const accepted = [];
  const failures = [];
  const retries = { count: 0, reasons: {} };
  let inFlight = 0;
  const publishOnce = async (i) => {
    const r = await fetch(`${nets[pubNode].httpUrl}/publish?channel=${CHANNEL}`, {
      method: "POST",
      body: String(i),
      headers: { "idempotency-key": `chaos-${i}` },
      signal: AbortSignal.any([AbortSignal.timeout(10000), t.signal]),
    });
    const text = await r.text();
    if (r.ok) return JSON.parse(text).positions?.[CHANNEL]?.offset ?? null;
    // 503 (Redis not answering), 504 (outcome unknown): the same key again is safe.
    if (r.status === 503 || r.status === 504) throw new Error(`${r.status}`);
    failures.push(`${i}: ${r.status} ${text}`);
    return undefined;
  };
  const publish = async (i) => {
    const giveUp = Date.now() + 60000;
    for (;;) {
      try {
        const offset = await publishOnce(i);
        if (offset !== undefined) {
          accepted.push(i);
          offsetOf.set(i, offset);
        }
        return;
      } catch (e) {
        retries.count++;
        const why = e.name === "TimeoutError" ? "timeout" : e.message;
        retries.reasons[why] = (retries.reasons[why] ?? 0) + 1;
        if (Date.now() > giveUp || t.signal.aborted) {
          failures.push(`${i}: not accepted in 60 s (${why})`);
          return;
        }
        await sleep(50);
      }
    }
  };
  const t0 = Date.now();
  const publishing = (async () => {
    const all = [];
    for (let i = 1; i <= COUNT && !t.signal.aborted; i++) {
      const wait = t0 + i * PERIOD_MS - Date.now();
      if (wait > 0) await sleep(wait);
      while (inFlight >= MAX_IN_FLIGHT) await sleep(1);
      inFlight++;
      all.push(publish(i).finally(() => inFlight--));
    }
    await Promise.all(all);
  })();

  // Each step comes when its share of the messages has been accepted (on a fast machine,
  // at that share of the 30 s), so a loaded machine that publishes slowly still has every
  // step in the middle of the stream.
  const events = [];
  const at = async (fraction) => {
    await waitFor(`${fraction * 100} % of the messages accepted`, () => accepted.length >= COUNT * fraction || failures.length || t.signal.aborted, DURATION_MS * 10, 10);
    return `${accepted.length} accepted, ${((Date.now() - t0) / 1000).toFixed(1)} s`;
  };
  // 1. Drain the page's node (SIGTERM: 1001 spread over drain_window_ms, exit 0).
  let when = await at(0.13);
  const drained = await pageNode();
  const exit = await nodes[drained].drain();
  events.push(`[${when}] drained ${drained} (exit ${exit.code ?? exit.signal})`);
  // 2. Restart it on the same ports (behind the same relays).
  when = await at(0.3);
  nodes[drained] = await Gateway.start({ settings: settings(nets[drained]), toml, nodeId: drained, ports: nodes[drained].ports });
  events.push(`[${when}] restarted ${drained}`);
  // 3. Kill the client connections of the page's node.
  when = await at(0.5);
  const killed = await pageNode();
  nets[killed].killClients();
  events.push(`[${when}] killed the connections of ${killed}`);
  // 4. Block the network of the page's node (WebSocket, HTTP, Redis) for 2 s.
  when = await at(0.7);
  const blocked = await pageNode();
  nets[blocked].blackhole();
  await sleep(BLOCK_MS);
  nets[blocked].open();
  events.push(`[${when}] blocked ${blocked} for ${BLOCK_MS} ms`);
  // 5. Block the publisher's node the same way (beyond the four steps): its
  // publications fail (503) or end unanswered (504) and are sent again with their keys.
  when = await at(0.85);
  nets[pubNode].blackhole();
  await sleep(BLOCK_MS);
  nets[pubNode].open();
  events.push(`[${when}] blocked ${pubNode} (the publisher's) for ${BLOCK_MS} ms`);
  t.diagnostic(events.join(", "));

  await publishing;
  // Accepted messages in the order Redis accepted them.
  accepted.sort((x, y) => offsetOf.get(x) - offsetOf.get(y));
  const publishSeconds = (Date.now() - t0) / 1000;
  t.diagnostic(`publisher: ${accepted.length} accepted in ${publishSeconds.toFixed(1)} s (${(accepted.length / publishSeconds).toFixed(0)}/s), ${retries.count} retries ${JSON.stringify(retries.reasons)}`);
  assert.deepEqual(failures, [], "every message accepted by a node");
  // The last accepted message arrives even when others were lost; then the page's list is judged.
  const last = String(accepted.at(-1));
  const lastIn = async () => (await c.page.evaluate((ch) => window.rec.pubs[ch]?.at(-1)?.data, CHANNEL)) === last;
  await c.until("the last publication in the page", lastIn, 60000).catch((e) => t.diagnostic(e.message.split("\n")[0]));
  const got = await c.pubs(CHANNEL);
  const data = got.map((p) => Number(p.data));
  const stats = await c.stats();
  const lost = await c.of("unrecoverable");
  const gaps = await c.page.evaluate(() => window.arrivals.slice(1).map((x, i) => x - window.arrivals[i]));
  const longestGap = Math.round(Math.max(0, ...gaps));
  // Each disconnect's close code and when (s after the first message was sent).
  const closes = (await c.page.evaluate(() => window.drops)).map(([code, at]) => `${code}@${((at - t0) / 1000).toFixed(1)}`).join(" ");
  const load1 = os.loadavg()[0];
  console.log(`chaos: ${accepted.length} publications accepted, ${got.length} received (${judge(data, accepted)}), ` +
    `reconnects ${stats.reconnects} (disconnects: ${closes}), longest gap ${longestGap} ms, duplicates dropped ${stats.duplicatesDropped}, ` +
    `unrecoverable ${lost.length}, publisher retries ${retries.count}, ${os.cpus().length} CPUs, ` +
    `load average ${load0.toFixed(2)} before, ${load1.toFixed(2)} after`);
  assert.deepEqual(data, accepted, "every accepted message exactly once, in order");
  if (!withoutHistory) {
    for (let i = 1; i < got.length; i++) assert.equal(got[i].offset, got[i - 1].offset + 1, `offset after ${got[i - 1].offset}`);
    for (const p of got) assert.equal(p.offset, offsetOf.get(Number(p.data)), `message ${p.data}: the offset its publish reply gave`);
  }
  assert.deepEqual(lost, []);
  // The drain and the kill each force a reconnect; the 2 s block may or may not
  // (the link is declared dead after 2 x heartbeat_ms = 2 s of silence).
  assert.ok(stats.reconnects >= 2, `reconnected after the drain and the kill (${stats.reconnects})`);
  // Both nodes end up serving: haproxy sees them UP again.
  await waitFor("haproxy sees both nodes UP", async () => Object.values(await lb.status()).every((s) => s === "UP"), 15000, 200);
});

/** "exact" or what is wrong: missing ranges, repeated and out-of-order counts (against `expected`'s order). */
function judge(data, expected) {
  const seen = new Set(data);
  const missing = [];
  for (const i of expected) {
    if (seen.has(i)) continue;
    const last = missing.at(-1);
    if (last && last[1] === i - 1) last[1] = i;
    else missing.push([i, i]);
  }
  const missed = missing.reduce((n, [a, b]) => n + b - a + 1, 0);
  const repeated = data.length - seen.size;
  const rank = new Map(expected.map((m, i) => [m, i]));
  const disorder = data.filter((d, i) => i > 0 && rank.get(d) < rank.get(data[i - 1])).length;
  if (!missed && !repeated && !disorder && data.length === expected.length) return "exact";
  const ranges = missing.slice(0, 8).map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
  return `missing ${missed} [${ranges}${missing.length > 8 ? ",..." : ""}], repeated ${repeated}, out of order ${disorder}`;
}
