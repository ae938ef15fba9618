// Connection tokens against a gateway in jwt mode (HS256): refresh before exp, a new
// token after a 401 and after a 4003 close.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { PushgateClient } from "../../dist/pushgate.js";
import { Gateway } from "../support/gateway.mjs";
import { mintHs256, nowSec, SECRET } from "../support/jwt.mjs";
import { record, collect } from "../support/record.mjs";

// Expired connections are noticed within heartbeat_interval_ms (1 s) and closed after
// the grace (0.5 s). The client's dead-link detection stays on (2 s of silence).
const gw = await Gateway.start({
  settings: { auth_mode: "jwt", jwt_hs256_secret: SECRET, heartbeat_interval_ms: 1000, token_refresh_grace_ms: 500 },
});
after(() => gw.stop());

const token = (sub, ttlSec, extra = {}) => mintHs256({ sub, exp: nowSec() + ttlSec, channels: ["feed", "feed:*"], ...extra });

test("the token is refreshed before it expires: one connection outlives several tokens", async (t) => {
  const issued = [];
  const client = new PushgateClient(gw.wsUrl, {
    WebSocket,
    // 3 s tokens, refreshed 1.5 s before exp (half their lifetime).
    getToken: async () => {
      const tok = token("alice", 3);
      issued.push(tok);
      return tok;
    },
    refreshLeadMs: 1500,
    minRefreshIntervalMs: 1000, // 3 s tokens; the test waits for 3 refreshes, within the server's 5 a minute
  });
  t.after(() => client.disconnect());
  const rec = record(client);
  const got = collect(client.subscribe("feed"));
  client.connect();
  await rec.until("subscribed", () => client.getSubscription("feed").state === "subscribed");
  assert.equal(rec.of("connected")[0].user, "alice");
  const firstExp = JSON.parse(Buffer.from(issued[0].split(".")[1], "base64url")).exp;
  // Three refreshes accepted, the last one after the first token's expiry (+ grace).
  await rec.until("three refreshes", () => rec.of("refreshed").length >= 3, 15000);
  await rec.until("past the first token's expiry and grace", () => Date.now() > (firstExp + 1) * 1000, 5000);
  await gw.publish("channel=feed", "still here");
  await rec.until("publication on the same connection", () => got.length === 1);
  assert.equal(client.stats.connects, 1, "never reconnected");
  assert.deepEqual(rec.of("disconnected"), []);
  assert.deepEqual(rec.errors(), []);
  assert.ok(rec.of("refreshed").every((r) => r.exp > firstExp - 1));
});

test("a 401 at the handshake: an unauthorized error, getToken is asked again, then connected", async (t) => {
  let calls = 0;
  const client = new PushgateClient(gw.wsUrl, {
    WebSocket,
    getToken: () => (++calls === 1 ? mintHs256({ sub: "bob", exp: nowSec() + 60 }, "a-different-secret-of-at-least-32-bytes!!") : token("bob", 60)),
    backoff: { minDelayMs: 50, maxDelayMs: 200 },
  });
  t.after(() => client.disconnect());
  const rec = record(client);
  client.connect();
  await rec.until("connected", () => client.state === "connected");
  assert.equal(calls, 2);
  const unauthorized = rec.of("error").filter((e) => e.type === "unauthorized");
  assert.equal(unauthorized.length, 1);
  assert.equal(unauthorized[0].status, 401);
});

test("4003 (token expired, refresh refused): error events, then a new token and a reconnect that resubscribes", async (t) => {
  let closed4003 = false;
  let calls = 0;
  const client = new PushgateClient(gw.wsUrl, {
    WebSocket,
    // First a 2 s token; then, until the 4003, only tokens for another user (the server
    // refuses them as refreshes); after it, a good one.
    getToken: () => {
      calls++;
      if (calls === 1 || closed4003) return token("carol", calls === 1 ? 2 : 60);
      return token("mallory", 60);
    },
    refreshLeadMs: 1000,
    backoff: { minDelayMs: 50, maxDelayMs: 200 },
  });
  t.after(() => client.disconnect());
  const rec = record(client);
  client.on("disconnected", (d) => {
    if (d.code === 4003) closed4003 = true;
  });
  const got = collect(client.subscribe("feed:carol"));
  client.connect();
  await rec.until("closed with 4003 and connected again", () => closed4003 && client.state === "connected" && client.stats.connects === 2, 15000);
  assert.ok(rec.of("error").some((e) => e.type === "refresh_failed"), "the refused refresh reached an error event");
  const d = rec.of("disconnected").find((x) => x.code === 4003);
  assert.equal(d.reconnect, true);
  await rec.until("resubscribed", () => client.getSubscription("feed:carol").state === "subscribed");
  await gw.publish("channel=feed:carol", "after 4003");
  await rec.until("publication", () => got.length === 1);
  assert.equal(rec.of("connected")[1].user, "carol");
});

test("a channel the token does not allow: subscribe_failed on that subscription only", async (t) => {
  const client = new PushgateClient(gw.wsUrl, { WebSocket, getToken: () => token("dave", 60) });
  t.after(() => client.disconnect());
  const rec = record(client);
  const ok = client.subscribe("feed");
  const bad = client.subscribe("secret");
  const errs = [];
  bad.on("error", (e) => errs.push(e));
  client.connect();
  await rec.until("both answered", () => ok.state === "subscribed" && bad.state === "unsubscribed");
  assert.equal(errs[0].code, "forbidden");
});
