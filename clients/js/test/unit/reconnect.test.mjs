// Reconnecting: backoff between attempts, the close-code policy, tokens after 401/4003,
// resubscribing, and that every problem reaches an event.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, advance, connected, fakeJwt, FakeWebSocket, settle, T0 } from "../support/unit.mjs";

test("connect: connecting, then connected on the server's first message; subscriptions are sent then", async (t) => {
  const { client, of } = setup(t);
  const sub = client.subscribe("news", () => {});
  assert.equal(client.state, "disconnected");
  client.connect();
  assert.equal(client.state, "connecting");
  await settle();
  const ws = FakeWebSocket.last();
  assert.deepEqual(ws.protocols, ["pushgate.v1"]);
  assert.equal(ws.binaryType, "arraybuffer");
  assert.equal(ws.sent.length, 0, "nothing is sent before `connected`");
  ws.accept();
  assert.equal(client.state, "connected");
  assert.deepEqual(of("state"), ["connecting", "connected"]);
  assert.deepEqual(of("connected")[0], { conn: "n1-1", heartbeatMs: 25000, channels: [], reconnect: false });
  const cmd = ws.lastCommand("subscribe");
  assert.deepEqual(cmd.channels, ["news"]);
  assert.equal(cmd.since, undefined);
  assert.equal(sub.state, "subscribing");
  ws.message({ type: "subscribed", channels: ["news"], id: cmd.id });
  assert.equal(sub.state, "subscribed");
});

test("abnormal close: reconnect after a full-jitter delay that grows while attempts fail", async (t) => {
  const { client, of } = setup(t, { backoff: { minDelayMs: 1000, maxDelayMs: 3000 } });
  const ws = await connected(client);
  ws.serverClose(1006);
  assert.equal(client.state, "connecting");
  assert.deepEqual(of("disconnected").at(-1), { code: 1006, reason: "", reconnect: true, delayMs: 500 });
  await advance(t, 499);
  assert.equal(FakeWebSocket.instances.length, 1);
  await advance(t, 1);
  assert.equal(FakeWebSocket.instances.length, 2);
  // This attempt fails at the handshake: the next bound doubles (random 0.5 -> 1000), then caps at 3000.
  FakeWebSocket.last().fail();
  assert.equal(of("disconnected").at(-1).delayMs, 1000);
  await advance(t, 1000);
  FakeWebSocket.last().fail();
  assert.equal(of("disconnected").at(-1).delayMs, 1500);
  await advance(t, 1500);
  FakeWebSocket.last().fail();
  assert.equal(of("disconnected").at(-1).delayMs, 1500, "bound capped at maxDelayMs");
  await advance(t, 1500);
  // Success resets the attempts: the next loss starts from the first bound again.
  FakeWebSocket.last().accept();
  assert.equal(client.stats.reconnects, 1);
  assert.equal(of("connected").at(-1).reconnect, true);
  FakeWebSocket.last().serverClose(4008, "slow consumer");
  assert.equal(of("disconnected").at(-1).delayMs, 500);
  // Each handshake failure reached an error event.
  assert.equal(of("error").filter((e) => e.type === "transport").length, 3);
});

test("1001 (drain): reconnect soon, within drainSpreadMs, without growing the backoff", async (t) => {
  const { client, of } = setup(t, { drainSpreadMs: 4000 });
  const ws = await connected(client);
  ws.serverClose(1001, "draining");
  assert.deepEqual(of("disconnected").at(-1), { code: 1001, reason: "draining", reconnect: true, delayMs: 2000 });
  await advance(t, 2000);
  assert.equal(FakeWebSocket.instances.length, 2);
  FakeWebSocket.last().fail();
  assert.equal(of("disconnected").at(-1).delayMs, 250, "first backoff bound after the drain");
});

for (const code of [1002, 1007, 1009]) {
  test(`${code}: reported, and no reconnect`, async (t) => {
    const { client, of } = setup(t);
    const ws = await connected(client);
    ws.serverClose(code, "bad client");
    assert.equal(client.state, "disconnected");
    assert.deepEqual(of("disconnected").at(-1), { code, reason: "bad client", reconnect: false });
    const err = of("error").at(-1);
    assert.equal(err.type, "protocol");
    assert.equal(err.code, code);
    await advance(t, 60 * 60 * 1000);
    assert.equal(FakeWebSocket.instances.length, 1, "no new connection within an hour");
    // The application may try again explicitly.
    client.connect();
    await settle();
    assert.equal(FakeWebSocket.instances.length, 2);
  });
}

test("4003: getToken is asked again before reconnecting", async (t) => {
  let n = 0;
  const tokens = [];
  const { client } = setup(t, {
    getToken: async () => {
      const tok = fakeJwt({ sub: "alice", exp: T0 / 1000 + 3600, n: ++n });
      tokens.push(tok);
      return tok;
    },
  });
  const ws = await connected(client);
  assert.deepEqual(ws.protocols, ["pushgate.v1", tokens[0]]);
  ws.serverClose(1006);
  await advance(t, 250);
  assert.equal(n, 1, "an abnormal close reuses the token while it is valid");
  assert.deepEqual(FakeWebSocket.last().protocols, ["pushgate.v1", tokens[0]]);
  FakeWebSocket.last().accept();
  FakeWebSocket.last().serverClose(4003, "token expired");
  await advance(t, 250);
  assert.equal(n, 2);
  assert.deepEqual(FakeWebSocket.last().protocols, ["pushgate.v1", tokens[1]]);
});

test("a 401 at the handshake (as `ws` reports it): an unauthorized error, then a new token", async (t) => {
  let n = 0;
  const { client, of } = setup(t, { getToken: () => fakeJwt({ sub: "a", exp: T0 / 1000 + 3600, n: ++n }) });
  client.connect();
  await settle();
  FakeWebSocket.last().fail("Unexpected server response: 401");
  const err = of("error").at(-1);
  assert.equal(err.type, "unauthorized");
  assert.equal(err.status, 401);
  await advance(t, 250);
  assert.equal(n, 2);
});

test("handshakes failing with an unknown status (browsers): a new token after failuresBeforeNewToken", async (t) => {
  let n = 0;
  const { client } = setup(t, {
    getToken: () => fakeJwt({ sub: "a", exp: T0 / 1000 + 3600, n: ++n }),
    failuresBeforeNewToken: 2,
    backoff: { minDelayMs: 100, maxDelayMs: 100 },
  });
  client.connect();
  await settle();
  FakeWebSocket.last().fail("");
  await advance(t, 100);
  assert.equal(n, 1);
  FakeWebSocket.last().fail("");
  await advance(t, 100);
  assert.equal(n, 2);
});

test("getToken throwing is an error event and a retry with backoff", async (t) => {
  let n = 0;
  const { client, of } = setup(t, {
    getToken: async () => {
      if (++n === 1) throw new Error("auth backend down");
      return fakeJwt({ sub: "a", exp: T0 / 1000 + 3600 });
    },
  });
  client.connect();
  await settle();
  assert.equal(of("error").at(-1).type, "token");
  assert.match(of("error").at(-1).message, /auth backend down/);
  assert.equal(FakeWebSocket.instances.length, 0);
  await advance(t, 250);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("no `connected` within connectTimeoutMs: an error, the socket dropped, a new attempt", async (t) => {
  const { client, of } = setup(t, { connectTimeoutMs: 5000 });
  client.connect();
  await settle();
  const ws = FakeWebSocket.last();
  ws.readyState = 1; // the TCP connection is up, but the server says nothing
  await advance(t, 5000);
  assert.equal(of("error").at(-1).type, "connect_timeout");
  assert.equal(ws.closedWith.code, 4000);
  await advance(t, 250);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("disconnect(): close 1000, disconnected, and no reconnect", async (t) => {
  const { client, of } = setup(t);
  const ws = await connected(client);
  client.disconnect();
  assert.deepEqual(ws.closedWith, { code: 1000, reason: "client disconnect" });
  assert.equal(client.state, "disconnected");
  assert.equal(of("disconnected").at(-1).reconnect, false);
  ws.serverClose(1000); // late events of the old socket are ignored
  await advance(t, 60000);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("disconnect() while waiting to reconnect cancels the attempt", async (t) => {
  const { client } = setup(t);
  const ws = await connected(client);
  ws.serverClose(1006);
  client.disconnect();
  await advance(t, 60000);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("resubscribe after a reconnect: every channel, in one command, sent once", async (t) => {
  const { client } = setup(t);
  client.subscribe("a");
  client.subscribe("b");
  let ws = await connected(client);
  assert.deepEqual(ws.lastCommand("subscribe").channels, ["a", "b"]);
  ws.serverClose(4001);
  await advance(t, 250);
  ws = FakeWebSocket.last();
  // A subscribe() from a `connected` listener is sent once, not twice.
  client.once("connected", () => client.subscribe("c"));
  ws.accept();
  assert.deepEqual(
    ws.commands("subscribe").map((c) => c.channels),
    [["a", "b"], ["c"]],
  );
});

test("more than 100 channels: several subscribe commands", async (t) => {
  const { client } = setup(t);
  for (let i = 0; i < 250; i++) client.subscribe(`ch${i}`);
  const ws = await connected(client);
  assert.deepEqual(ws.commands("subscribe").map((c) => c.channels.length), [100, 100, 50]);
});

test("a refused multi-channel subscribe is retried channel by channel; the forbidden one fails alone", async (t) => {
  const { client, of } = setup(t);
  const ok = client.subscribe("news");
  const bad = client.subscribe("secret");
  const subErrors = [];
  bad.on("error", (e) => subErrors.push(e));
  const ws = await connected(client);
  const first = ws.lastCommand("subscribe");
  ws.message({ type: "error", code: "forbidden", message: "channel \"secret\" is not allowed", id: first.id });
  const [one, two] = ws.commands("subscribe").slice(1);
  assert.deepEqual([one.channels, two.channels], [["news"], ["secret"]]);
  ws.message({ type: "subscribed", channels: ["news"], id: one.id });
  ws.message({ type: "error", code: "forbidden", message: "channel \"secret\" is not allowed", id: two.id });
  assert.equal(ok.state, "subscribed");
  assert.equal(bad.state, "unsubscribed");
  assert.equal(subErrors.length, 1);
  assert.equal(subErrors[0].type, "subscribe_failed");
  assert.equal(subErrors[0].code, "forbidden");
  assert.equal(client.getSubscription("secret"), undefined);
  assert.equal(of("error").length, 0, "handled on the subscription, so not repeated on the client");
});

test("a subscription without an error listener: the problem reaches the client's error event", async (t) => {
  const { client, of } = setup(t);
  client.subscribe("secret");
  const ws = await connected(client);
  ws.message({ type: "error", code: "forbidden", message: "no", id: ws.lastCommand("subscribe").id });
  assert.equal(of("error").at(-1).type, "subscribe_failed");
  assert.equal(of("error").at(-1).channel, "secret");
});

test("listeners that throw do not break the client; the exception becomes an error event", async (t) => {
  const { client, of } = setup(t);
  client.subscribe("news", () => {
    throw new Error("app bug");
  });
  const ws = await connected(client);
  ws.message({ type: "pub", channel: "news", data: "x" });
  const err = of("error").at(-1);
  assert.equal(err.type, "listener");
  assert.match(err.cause.message, /app bug/);
  assert.equal(client.state, "connected");
});

test("unreadable frames and unknown error replies reach the error event; unknown types reach `message`", async (t) => {
  const { client, of } = setup(t);
  const ws = await connected(client);
  ws.message("{not json");
  ws.binary([9, 1]);
  ws.message({ type: "error", code: "bad_json", message: "?" });
  ws.message({ type: "presence", users: 3 });
  assert.deepEqual(of("error").map((e) => e.type), ["bad_frame", "bad_frame", "server"]);
  assert.deepEqual(of("message"), [{ type: "presence", users: 3 }]);
});

test("publications no subscription takes go to the client's publication event", async (t) => {
  const { client, of } = setup(t);
  const ws = await connected(client);
  ws.message({ type: "pub", data: "to everyone" });
  ws.binary([0, 1, 2]);
  assert.equal(of("publication")[0].data, "to everyone");
  assert.deepEqual([...of("publication")[1].data], [1, 2]);
});

test("after unsubscribe, publications still in flight are dropped quietly", async (t) => {
  const { client, of } = setup(t);
  const got = [];
  const sub = client.subscribe("news", (p) => got.push(p.data));
  const ws = await connected(client);
  ws.message({ type: "subscribed", channels: ["news"], id: ws.lastCommand("subscribe").id });
  sub.unsubscribe();
  const cmd = ws.lastCommand("unsubscribe");
  assert.deepEqual(cmd.channels, ["news"]);
  ws.message({ type: "pub", channel: "news", data: "late" });
  ws.message({ type: "unsubscribed", channels: ["news"], id: cmd.id });
  assert.deepEqual(got, []);
  assert.equal(of("publication").length, 0);
  assert.equal(of("error").length, 0);
});

test("subscribe() refuses invalid names and a second subscription to the same channel", (t) => {
  const { client } = setup(t);
  assert.throws(() => client.subscribe("a b"), TypeError);
  client.subscribe("a");
  assert.throws(() => client.subscribe("a"), /already subscribed/);
});
