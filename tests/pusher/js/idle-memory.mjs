// Server memory per idle connection, Pusher beside pushgate.v1: one gateway (the
// release binary, $PUSHGATE_BIN), N connections of each protocol, each subscribed to
// one of 100 public channels; the gateway's RSS (VmRSS) is read before and after each
// batch. Not a test: a measurement (docs/pusher.md, "Memory").
// Usage: PUSHGATE_BIN=target/release/pushgate node tests/pusher/js/idle-memory.mjs [N] [v1-first]
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { Gateway, APP_TOML } from "./test/support.mjs";

const N = Number(process.argv[2] || 2000);
const rss = (pid) => Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/)[1]) * 1024;
const settle = () => new Promise((r) => setTimeout(r, 1000));

async function open(url, first, subscribe, done) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on("error", reject);
    ws.on("message", (raw) => {
      const m = JSON.parse(raw.toString());
      if (first(m)) ws.send(JSON.stringify(subscribe(m)));
      else if (done(m)) resolve(ws);
    });
  });
}

async function batch(label, gw, make) {
  await settle();
  const before = rss(gw.pid);
  const sockets = [];
  for (let i = 0; i < N; i += 100) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, N - i) }, (_, j) => make(i + j)))));
  }
  await settle();
  const after = rss(gw.pid);
  console.log(`${label}: ${N} connections, RSS +${((after - before) / 1024 / 1024).toFixed(1)} MiB, ${Math.round((after - before) / N)} B per connection`);
  return sockets;
}

const gw = await Gateway.start({ toml: APP_TOML });
try {
  const base = `ws://127.0.0.1:${gw.ports.ws}`;
  const runPusher = () => batch("pusher", gw, (i) =>
    open(
      `${base}/app/app-key?protocol=7&client=js&version=8.6.0`,
      (m) => m.event === "pusher:connection_established",
      () => ({ event: "pusher:subscribe", data: { channel: `news-${i % 100}` } }),
      (m) => m.event === "pusher_internal:subscription_succeeded",
    ),
  );
  const runV1 = () => batch("pushgate.v1", gw, (i) =>
    open(
      `${base}/ws`,
      (m) => m.type === "connected",
      () => ({ type: "subscribe", channels: [`news-${i % 100}`] }),
      (m) => m.type === "subscribed",
    ),
  );
  // The first batch also pays the process's warm-up: `v1-first` swaps the order.
  const v1First = process.argv[3] === "v1-first";
  const first = await (v1First ? runV1() : runPusher());
  const second = await (v1First ? runPusher() : runV1());
  for (const ws of [...first, ...second]) ws.terminate();
} finally {
  await gw.stop();
}
