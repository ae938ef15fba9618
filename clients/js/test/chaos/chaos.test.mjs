// Chaos, in the browser: two nodes joined through Redis (append-only persistence)
// behind haproxy; the page (Chromium) follows a history channel through a TCP relay
// that plays its network. A publisher sends one message every 10 ms for 30 s through
// the other node while the test drains the page's node (SIGTERM), restarts it, kills
// the page's connection, and blocks its network for 2 s. The page must end with every
// message exactly once, in order. Prints the reconnect count and the longest gap.
//
// It needs the nodes to share each channel's history through Redis (issue #11, its Redis
// part). Until then it is not part of `npm test` (run it with `npm run test:chaos`): with
// per-node memory history a page that moves to the other node gets `unrecoverable` and
// misses that gap, and the test fails listing the missing messages. When the gateway
// refuses [[history]] with broker = "redis" (docs/history.md says it does), the test is
// skipped with the gateway's reason. CHAOS_WITHOUT_HISTORY=1 runs it on channels without
// history: it must then fail, listing what was missed.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { launch } from "../support/browser.mjs";
import { configRefused, Gateway, historyToml } from "../support/gateway.mjs";
import { Haproxy } from "../support/haproxy.mjs";
import { Redis } from "../support/redis.mjs";
import { TcpProxy } from "../support/tcp-proxy.mjs";
import { pageClient } from "../support/page-client.mjs";
import { startStaticServer } from "../support/static-server.mjs";

const withoutHistory = process.env.CHAOS_WITHOUT_HISTORY === "1";
const refused = withoutHistory ? undefined : configRefused(`broker = "redis"\n${historyToml("chaos:*")}`);
const PERIOD_MS = Number(process.env.CHAOS_PERIOD_MS ?? 10);
const DURATION_MS = Number(process.env.CHAOS_DURATION_MS ?? 30000);
const COUNT = Math.floor(DURATION_MS / PERIOD_MS);
const CHANNEL = "chaos:feed";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

test(`chaos: ${COUNT} publications through drain, restart, killed connection and 2 s blocked network arrive once each, in order`, { skip: refused ? `the gateway refuses history with broker = "redis": ${refused}` : false, timeout: DURATION_MS + 120000 }, async (t) => {
  const redis = await Redis.start();
  cleanups.push(() => redis.stop());
  const settings = {
    broker: "redis",
    redis_url: redis.url,
    drain_window_ms: 1000,
    shutdown_grace_ms: 5000,
    heartbeat_interval_ms: 1000,
  };
  const toml = withoutHistory ? "" : historyToml("chaos:*", 10000, 600000);
  const nodes = { n1: await Gateway.start({ settings, toml, nodeId: "n1" }), n2: await Gateway.start({ settings, toml, nodeId: "n2" }) };
  cleanups.push(() => nodes.n1.stop(), () => nodes.n2.stop());
  const lb = await Haproxy.start([nodes.n1, nodes.n2]);
  cleanups.push(() => lb.stop());
  const net = await new TcpProxy(lb.port).start();
  cleanups.push(() => net.stop());
  const browser = await launch();
  cleanups.push(() => browser.close());
  const server = await startStaticServer();
  cleanups.push(() => server.close());

  const c = await pageClient(t, browser.context, server.url, `ws://127.0.0.1:${net.port}/ws`, {
    backoff: { minDelayMs: 100, maxDelayMs: 2000 },
    drainSpreadMs: 500,
    connectTimeoutMs: 3000,
  });
  await c.page.evaluate((channel) => {
    window.follow(channel);
    window.arrivals = [];
    window.client.getSubscription(channel).on("publication", () => window.arrivals.push(performance.now()));
    window.client.connect();
  }, CHANNEL);
  await c.until("subscribed", async () => (await c.subState(CHANNEL)) === "subscribed");
  const pageNode = async () => (await c.of("connected")).at(-1).conn.split("-")[0];
  const first = await pageNode();
  const pubNodeId = first === "n1" ? "n2" : "n1";
  const publisher = nodes[pubNodeId];
  t.diagnostic(`page on ${first}, publisher on ${pubNodeId}`);

  // The publisher: message i at t0 + i * PERIOD_MS, through the other node.
  const failures = [];
  const t0 = Date.now();
  const publishing = (async () => {
    for (let i = 1; i <= COUNT; i++) {
      const wait = t0 + i * PERIOD_MS - Date.now();
      if (wait > 0) await sleep(wait);
      try {
        await publisher.publish(`channel=${CHANNEL}`, String(i));
      } catch (e) {
        failures.push(`${i}: ${e.message}`);
      }
    }
  })();

  const at = (fraction) => sleep(Math.max(t0 + DURATION_MS * fraction - Date.now(), 0));
  // 1. drain the page's node (SIGTERM: 1001 spread over drain_window_ms, exit 0).
  await at(0.13);
  const drained = await pageNode();
  const exit = await nodes[drained].drain();
  t.diagnostic(`drained ${drained}: exit ${JSON.stringify(exit)}`);
  // 2. restart it on the same ports.
  await at(0.3);
  nodes[drained] = await Gateway.start({ settings, toml, nodeId: drained, ports: nodes[drained].ports });
  // 3. kill the page's connection (a TCP reset: no close frame).
  await at(0.5);
  t.diagnostic(`killing the page's connection on ${await pageNode()}`);
  net.killAll();
  // 4. block the page's network for 2 s (nothing passes, nothing closes).
  await at(0.7);
  net.blackhole();
  await sleep(2000);
  net.open();

  await publishing;
  assert.deepEqual(failures, [], "every publish through the publisher's node was accepted");
  // The last message arrives even when others were lost; then the page's list is judged.
  const lastIn = async () => (await c.page.evaluate((ch) => window.rec.pubs[ch]?.at(-1)?.data, CHANNEL)) === String(COUNT);
  await c.until("the last publication in the page", lastIn, 60000).catch((e) => t.diagnostic(e.message.split("\n")[0]));
  const got = await c.pubs(CHANNEL);
  const data = got.map((p) => Number(p.data));
  const stats = await c.stats();
  const lost = await c.of("unrecoverable");
  const gaps = await c.page.evaluate(() => window.arrivals.slice(1).map((x, i) => x - window.arrivals[i]));
  const longestGap = Math.round(Math.max(...gaps));
  const summary = judge(data, COUNT);
  console.log(`chaos: ${COUNT} publications, ${got.length} received (${summary}), reconnects ${stats.reconnects}, ` +
    `longest gap ${longestGap} ms, duplicates dropped ${stats.duplicatesDropped}, unrecoverable ${lost.length}`);
  assert.equal(got.length, COUNT, "no duplicates delivered");
  assert.deepEqual(data, Array.from({ length: COUNT }, (_, i) => i + 1), "every message exactly once, in order");
  for (let i = 1; i < got.length; i++) assert.equal(got[i].offset, got[i - 1].offset + 1, `offset after ${got[i - 1].offset}`);
  assert.deepEqual(lost, []);
  // The drain and the kill each force one; the 2 s block may or may not (dead after 2 s of silence).
  assert.ok(stats.reconnects >= 2, `reconnected after the drain and the kill (${stats.reconnects})`);
});

/** "exact" or what is wrong: missing ranges, repeated and out-of-order counts. */
function judge(data, count) {
  const seen = new Set(data);
  const missing = [];
  for (let i = 1; i <= count; i++) {
    if (seen.has(i)) continue;
    const last = missing.at(-1);
    if (last && last[1] === i - 1) last[1] = i;
    else missing.push([i, i]);
  }
  const repeated = data.length - seen.size;
  const disorder = data.filter((d, i) => i > 0 && d < data[i - 1]).length;
  if (!missing.length && !repeated && !disorder && data.length === count) return "exact";
  const ranges = missing.slice(0, 8).map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
  return `missing ${count - seen.size} [${ranges}${missing.length > 8 ? ",..." : ""}], repeated ${repeated}, out of order ${disorder}`;
}
