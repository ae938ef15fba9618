// The live-feed page: the pushgate client library in a browser, nothing else.
import { PushgateClient } from "/pushgate.js";

const $ = (id) => document.getElementById(id);
const config = await (await fetch("/config.json")).json();
const channel = config.channel;
$("channel-name").textContent = channel;
$("curl-hint").textContent = `curl -X POST '${config.gatewayHttp}/publish?channel=${channel}' -d hello`;

const client = new PushgateClient(config.wsUrl);
const items = [];

client.on("state", (state) => {
  const el = $("state");
  el.textContent = state;
  el.className = `state ${state}`;
  el.dataset.state = state;
});
client.on("connected", (e) => {
  $("conn").textContent = e.conn;
  $("reconnects").textContent = String(client.stats.reconnects);
});
client.on("error", (e) => {
  $("problem").textContent = `${e.type}: ${e.message}`;
});

const sub = client.subscribe(channel, (pub) => {
  const data = pub.binary ? `(${pub.data.length} bytes)` : pub.data;
  items.push({ offset: pub.offset, data });
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString([], { hour12: false });
  const text = document.createElement("span");
  text.className = "data";
  text.textContent = data;
  li.append(time, text);
  if (pub.offset !== undefined) {
    const off = document.createElement("span");
    off.className = "offset";
    off.textContent = `#${pub.offset}`;
    li.append(off);
  }
  $("feed").prepend(li);
  $("count").textContent = String(items.length);
  $("empty").hidden = true;
}, { latest: true });
sub.on("unrecoverable", () => {
  $("problem").textContent = "missed publications that cannot be replayed";
});

$("publish").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("text");
  const status = $("publish-status");
  try {
    const r = await fetch(`/api/publish?channel=${encodeURIComponent(channel)}`, { method: "POST", body: input.value });
    const reply = await r.text();
    status.textContent = r.ok ? `published: ${describe(reply)}` : `refused (${r.status}): ${reply.trim()}`;
    if (r.ok) input.value = "";
  } catch (e) {
    status.textContent = `publish failed: ${e.message}`;
  }
});

/** The gateway's publish reply, in words: the offset on a history channel, else the reply. */
function describe(reply) {
  try {
    const r = JSON.parse(reply);
    const pos = r.positions?.[channel];
    const subscribers = `${r.enqueued} local subscriber${r.enqueued === 1 ? "" : "s"}`;
    return pos ? `#${pos.offset} (epoch ${pos.epoch}), ${subscribers}` : `${subscribers} (${reply.trim()})`;
  } catch {
    return reply.trim();
  }
}

client.connect();
// For the tests and the curious: window.pushgateDemo.client in the console.
window.pushgateDemo = { client, sub, items };
