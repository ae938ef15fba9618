// permessage-deflate (RFC 7692) with Node's `ws` against the real gateway
// (compression = "on"): negotiation, a publication compressed once for 1,000 compressed
// and 1,000 plain clients, compressed client commands, a zip bomb closed with 1009.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Gateway, waitFor } from "../support/gateway.mjs";

// No heartbeat ping during the test: the byte count below must be only publications.
const gw = await Gateway.start({
  settings: {
    compression: "on",
    compression_min_bytes: 256,
    heartbeat_interval_ms: 600000,
    heartbeat_timeout_ms: 1200000,
  },
});
after(() => gw.stop());

/** A 2 KB JSON publication like a market-data update. */
function quotes(seed) {
  const rows = [];
  for (let i = 0; JSON.stringify(rows).length < 2000; i++) {
    rows.push({ sym: `S${(seed + i) % 97}`, bid: 100 + i / 8, ask: 100.25 + i / 8, ts: 1700000000000 + i });
  }
  return JSON.stringify(rows);
}

/**
 * Opens a client; resolves once its `connected` message arrived. `deflate`: the ws
 * client's perMessageDeflate option (false: no offer at all). `ws.agreed` is the
 * server's Sec-WebSocket-Extensions ("" if none; `ws.extensions` has only the names).
 */
function open(deflate, onData) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(gw.wsUrl, { perMessageDeflate: deflate });
    ws.once("error", reject);
    ws.once("upgrade", (res) => {
      ws.agreed = res.headers["sec-websocket-extensions"] ?? "";
    });
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? data : data.toString();
      if (!ws.greeted) {
        ws.greeted = true;
        return resolve(ws);
      }
      onData?.(text, ws);
    });
  });
}

function closed(ws) {
  return new Promise((resolve) => ws.once("close", (code) => resolve(code)));
}

test("ws negotiates permessage-deflate: no context takeover either way; off without an offer", async (t) => {
  const z = await open(true);
  t.after(() => z.terminate());
  assert.equal(z.extensions, "permessage-deflate");
  assert.match(z.agreed, /^permessage-deflate/);
  assert.match(z.agreed, /server_no_context_takeover/);
  assert.match(z.agreed, /client_no_context_takeover/);
  const plain = await open(false);
  t.after(() => plain.terminate());
  assert.equal(plain.extensions, "");
  assert.equal(plain.agreed, "");
  // The client asks for a 512-byte server window: granted and echoed. A 2 KB
  // publication then reaches it uncompressed (RFC 7692 allows any message plain).
  const got = [];
  const small = await open({ serverMaxWindowBits: 9 }, (d) => got.push(d));
  t.after(() => small.terminate());
  assert.match(small.agreed, /server_max_window_bits=9/);
  const data = quotes(1);
  await gw.publish("all=true", data);
  await waitFor("the publication", () => got.length === 1);
  assert.equal(JSON.parse(got[0]).data, data);
});

test("one publication to 1,000 compressed and 1,000 plain clients: intact everywhere, compressed once", async (t) => {
  const N = 1000;
  const got = { z: [], plain: [] };
  const clients = [];
  t.after(() => clients.forEach((c) => c.terminate()));
  for (let i = 0; i < N; i++) {
    // In small groups: 2,000 handshakes at once would only queue in the kernel.
    const pair = await Promise.all([
      open(true, (d) => got.z.push(d)),
      open(false, (d) => got.plain.push(d)),
    ]);
    clients.push(...pair);
  }
  assert.ok(clients.filter((c, i) => i % 2 === 0).every((c) => c.extensions === "permessage-deflate"));
  assert.ok(clients.filter((c, i) => i % 2 === 1).every((c) => c.extensions === ""));
  const frames0 = await gw.metric("pushgate_compressed_frames_total");
  const in0 = await gw.metric("pushgate_compression_bytes_in_total");
  const out0 = await gw.metric("pushgate_compression_bytes_out_total");
  const wire0 = await gw.metric("pushgate_bytes_written_total");
  const data = quotes(7);
  const reply = await gw.publish("all=true", data);
  assert.equal(reply.enqueued, 2 * N);
  await waitFor("every client's copy", () => got.z.length === N && got.plain.length === N, 30000);
  for (const d of [...got.z, ...got.plain]) assert.equal(JSON.parse(d).data, data);
  assert.equal((await gw.metric("pushgate_compressed_frames_total")) - frames0, 1, "compressed once");
  const plainFrame = (await gw.metric("pushgate_compression_bytes_in_total")) - in0;
  const zFrame = (await gw.metric("pushgate_compression_bytes_out_total")) - out0;
  assert.ok(zFrame * 2 < plainFrame, `a 2 KB JSON frame compresses at least 2x: ${plainFrame} -> ${zFrame}`);
  // Every byte written is one of the two frames: compressed clients got the compressed one.
  await waitFor("the writes to be counted", async () => (await gw.metric("pushgate_bytes_written_total")) - wire0 >= N * (plainFrame + zFrame));
  assert.equal((await gw.metric("pushgate_bytes_written_total")) - wire0, N * (plainFrame + zFrame));
});

test("a compressed client command is inflated and answered", async (t) => {
  const replies = [];
  const ws = await open({ threshold: 0 }, (d) => replies.push(JSON.parse(d)));
  t.after(() => ws.terminate());
  // Padded to 4 KB so that it is clearly a compressed message of some size.
  const cmd = JSON.stringify({ type: "subscribe", channels: ["zipped"], id: 7 }) + " ".repeat(4096);
  ws.send(cmd);
  await waitFor("the subscribed reply", () => replies.length === 1);
  assert.equal(replies[0].type, "subscribed");
  assert.equal(replies[0].id, 7);
  const data = quotes(3);
  await gw.publish("channel=zipped", data);
  await waitFor("the publication", () => replies.length === 2);
  assert.equal(replies[1].data, data);
});

test("a zip bomb (10 MB of zeros, ~10 KB compressed) is closed with 1009", async () => {
  const ws = await open({ threshold: 0 });
  const before = await gw.metric("pushgate_connections_closed_total", 'reason="message_too_big"');
  const code = closed(ws);
  ws.send(Buffer.alloc(10 << 20, 0x30).toString());
  assert.equal(await code, 1009);
  await waitFor("the close to be counted", async () =>
    (await gw.metric("pushgate_connections_closed_total", 'reason="message_too_big"')) === before + 1);
});
