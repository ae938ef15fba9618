// A TypeScript application using the package as published (dist/*.d.ts), compiled with
// strict settings and without skipLibCheck by test/unit/types.test.mjs.
import { PushgateClient, PushgateError, type Publication, type StreamPosition } from "../../dist/pushgate.js";

const client = new PushgateClient("ws://127.0.0.1:8080/ws", {
  getToken: async () => "token",
  backoff: { maxDelayMs: 5000 },
});
client.on("state", (s) => {
  const state: "connecting" | "connected" | "disconnected" = s;
  return state;
});
client.on("error", (e: PushgateError) => console.log(e.type, e.code, e.status, e.channel));
client.on("disconnected", (d) => console.log(d.code, d.reason, d.reconnect, d.delayMs));
client.on("publication", (p: Publication) => console.log(p.channel, p.data));
const since: StreamPosition = { epoch: "e", offset: 1 };
const sub = client.subscribe("chat:1", (p) => console.log(p.offset, p.binary), { latest: false, since });
sub.on("subscribed", (e) => console.log(e.recovered, e.position?.offset));
sub.on("unrecoverable", (e) => console.log(e.cause, e.previous, e.position));
const off = sub.on("error", (e) => console.log(e.type));
off();
client.connect();
console.log(sub.state, sub.position, client.stats.reconnects, client.getSubscription("chat:1") === sub);
sub.unsubscribe();
client.disconnect();
