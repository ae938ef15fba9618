// pusher-js in Node against the gateway: connect, public, private and presence
// channels (signatures from the pusher server SDK), publications from pushgate.v1's
// POST /publish and the other way (a client event reaching a pushgate.v1 subscriber),
// client events, member events, a forged signature refused, sign-in, and reconnecting
// after the node drains and comes back on the same port.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import PusherJs from "pusher-js";
import WebSocket from "ws";
import { startGateway, startAuthServer, clientOptions, mapped, once, within, waitFor, v1Token } from "./support.mjs";

const Pusher = PusherJs.default ?? PusherJs;
const WAIT = 10000;
let gw;
let auth;
const clients = [];

before(async () => {
  gw = await startGateway();
  auth = await startAuthServer();
});

after(async () => {
  for (const c of clients) c.disconnect();
  await gw?.stop();
  await auth?.close();
});

function client(opts) {
  const c = new Pusher("app-key", { ...clientOptions(gw, auth, opts) });
  clients.push(c);
  return c;
}

async function connected(c) {
  if (c.connection.state !== "connected") await within(WAIT, once(c.connection, "connected"), "connected");
  return c;
}

async function subscribed(c, name) {
  const ch = c.subscribe(name);
  await within(WAIT, once(ch, "pusher:subscription_succeeded"), `subscribed to ${name}`);
  return ch;
}

/** A pushgate.v1 client (ws) subscribed to `channels`; `messages` collects its publications. */
async function v1(channels) {
  const ws = new WebSocket(`${gw.wsUrl}?token=${v1Token()}`, "pushgate.v1");
  const messages = [];
  await new Promise((resolve, reject) => {
    ws.on("error", reject);
    ws.on("message", (raw) => {
      const m = JSON.parse(raw.toString());
      if (m.type === "connected") ws.send(JSON.stringify({ type: "subscribe", channels }));
      else if (m.type === "subscribed") resolve();
      else if (m.type === "pub") messages.push(m);
    });
  });
  return { ws, messages };
}

test("connects with a socket id and receives a pushgate.v1 publication on a public channel", async () => {
  const c = await connected(client());
  assert.match(c.connection.socket_id, /^\d+\.\d+$/);
  const ch = await subscribed(c, "news");
  const got = once(ch, "pushgate:publication");
  await gw.publish(`channel=${mapped("news")}`, "hello");
  assert.equal(await within(WAIT, got, "publication"), "hello");
  // A Pusher event published through pushgate.v1 (the envelope) keeps its name and data.
  const shipped = once(ch, "order-shipped");
  await gw.publish(`channel=${mapped("news")}`, JSON.stringify({ event: "order-shipped", data: JSON.stringify({ id: 7 }) }));
  assert.deepEqual(await within(WAIT, shipped, "order-shipped"), { id: 7 });
});

test("private channels: the SDK's signature is accepted, a forged one refused", async () => {
  const good = await connected(client());
  const ch = await subscribed(good, "private-orders");
  const got = once(ch, "pushgate:publication");
  await gw.publish(`channel=${mapped("private-orders")}`, "for members");
  assert.equal(await within(WAIT, got, "publication"), "for members");

  const bad = await connected(client({ forge: true }));
  const refused = bad.subscribe("private-orders");
  const err = await within(WAIT, once(refused, "pusher:subscription_error"), "subscription_error");
  assert.equal(err.status, 401, JSON.stringify(err));
  assert.equal(refused.subscribed, false);
});

test("presence: members, member_added and member_removed", async () => {
  const alice = await connected(client({ user: "alice" }));
  const room = await subscribed(alice, "presence-room");
  assert.equal(room.members.count, 1);
  assert.equal(room.members.me.id, "alice");
  assert.deepEqual(room.members.me.info, { name: "user alice" });

  const added = once(room, "pusher:member_added");
  const bob = await connected(client({ user: "bob" }));
  const bobRoom = await subscribed(bob, "presence-room");
  assert.equal(bobRoom.members.count, 2);
  const member = await within(WAIT, added, "member_added");
  assert.equal(member.id, "bob");
  assert.equal(room.members.count, 2);

  const removed = once(room, "pusher:member_removed");
  bob.unsubscribe("presence-room");
  assert.equal((await within(WAIT, removed, "member_removed")).id, "bob");
  assert.equal(room.members.count, 1);
});

test("client events reach the others, not the sender, and pushgate.v1 subscribers see their envelope", async () => {
  const a = await connected(client());
  const b = await connected(client());
  const chA = await subscribed(a, "private-chat");
  const chB = await subscribed(b, "private-chat");
  const sub = await v1([mapped("private-chat")]);
  let echoed = false;
  chA.bind("client-typing", () => (echoed = true));
  const got = once(chB, "client-typing");
  assert.equal(chA.trigger("client-typing", { who: "a" }), true);
  assert.deepEqual(await within(WAIT, got, "client event"), { who: "a" });
  await waitFor("the pushgate.v1 subscriber's copy", () => sub.messages.length === 1, WAIT);
  assert.deepEqual(JSON.parse(sub.messages[0].data), { event: "client-typing", data: JSON.stringify({ who: "a" }) });
  // A marker published after it reaches A: had A got its own event, it would be first.
  const marker = once(chA, "pushgate:publication");
  await gw.publish(`channel=${mapped("private-chat")}`, "marker");
  await within(WAIT, marker, "marker");
  assert.equal(echoed, false, "the sender got its own client event");
  sub.ws.close();
});

test("sign-in: signin_success, then events to the user's own channel", async () => {
  const c = await connected(client({ user: "carol" }));
  c.signin();
  await within(WAIT, c.user.signinDonePromise, "signin");
  assert.equal(c.user.user_data.id, "carol");
  // pusher-js follows #server-to-user-carol after signing in (pushgate:
  // pusher/1/=23server-to-user-carol); an event published there reaches c.user.
  const got = new Promise((resolve) => c.user.bind("notice", resolve));
  const channel = encodeURIComponent(mapped("=23server-to-user-carol"));
  const envelope = JSON.stringify({ event: "notice", data: JSON.stringify({ n: 1 }) });
  await waitFor("the user's event", async () => {
    const r = await gw.publish(`channel=${channel}`, envelope);
    return r.enqueued > 0;
  }, WAIT, 100);
  assert.deepEqual(await within(WAIT, got, "user event"), { n: 1 });
});

test("reconnects and resubscribes after the node drains and comes back on the same port", async () => {
  const c = await connected(client());
  const ch = await subscribed(c, "news-reconnect");
  const states = [];
  c.connection.bind("state_change", (s) => states.push(s.current));
  const ports = gw.ports;
  await gw.drain();
  await gw.stop();
  gw = await startGateway({ ports });
  await waitFor("pusher-js connected again", () => c.connection.state === "connected" && states.includes("connecting"), 30000);
  // Resubscribed by pusher-js: a publication reaches it (retried until the subscribe is in).
  let got;
  ch.bind("pushgate:publication", (d) => (got = d));
  await waitFor("the publication after reconnecting", async () => {
    await gw.publish(`channel=${mapped("news-reconnect")}`, "again");
    return got === "again";
  }, WAIT, 200);
});
