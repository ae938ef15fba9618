// What the Pusher tests share: a real gateway with one Pusher app (the release binary,
// started on free ports and stopped by PID, from clients/js's support), and a tiny
// auth endpoint whose signatures come from the `pusher` server SDK's own helpers
// (authorizeChannel, authenticateUser), which also serves the browser pages.
import http from "node:http";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import PusherServer from "pusher";
import { Gateway, waitFor, freePort } from "../../../../clients/js/test/support/gateway.mjs";
import { mintHs256, nowSec, SECRET } from "../../../../clients/js/test/support/jwt.mjs";

export { Gateway, waitFor, freePort };

export const APP = { id: "1", key: "app-key", secret: "app-secret" };
const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODULES = path.join(HERE, "..", "node_modules");

export const APP_TOML = `
[[pusher_apps]]
id = "${APP.id}"
key = "${APP.key}"
secret = "${APP.secret}"
client_events = true
client_events_per_second = 100
`;

/**
 * A gateway serving the test app (one shard, free ports). pushgate.v1 clients need a
 * token (auth_mode jwt): the mapped private channels are guarded from anonymous ones
 * (docs/pusher.md); Pusher clients need none.
 */
export function startGateway(opts = {}) {
  const settings = { auth_mode: "jwt", jwt_hs256_secret: SECRET, drain_window_ms: 0, ...opts.settings };
  return Gateway.start({ toml: APP_TOML, ...opts, settings });
}

/** A pushgate.v1 connection token allowing every channel of the test app. */
export const v1Token = () => mintHs256({ sub: "backend", exp: nowSec() + 600, channels: [`pusher/${APP.id}/*`] });

/** The pushgate channel a Pusher channel of the test app maps to (docs/pusher.md). */
export const mapped = (channel) => `pusher/${APP.id}/${channel}`;

function readBody(req) {
  return new Promise((resolve) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => resolve(body));
  });
}

/**
 * The app's auth endpoint. POST /pusher/auth (pusher-js's channel authorization:
 * form-encoded socket_id and channel_name; the user of presence channels in the `user`
 * query parameter; `forge=1` answers a signature made with another secret), POST
 * /pusher/user-auth (sign-in), and GET of the page and the two libraries.
 */
export async function startAuthServer() {
  const sdk = new PusherServer({ appId: APP.id, key: APP.key, secret: APP.secret, useTLS: false, host: "127.0.0.1" });
  const forger = new PusherServer({ appId: APP.id, key: APP.key, secret: "not-the-secret", useTLS: false, host: "127.0.0.1" });
  const files = {
    "/": ["text/html", "<!doctype html><meta charset=utf-8><title>pusher</title><script src=/pusher.js></script><script src=/echo.js></script>"],
    "/pusher.js": ["text/javascript", readFileSync(path.join(MODULES, "pusher-js/dist/web/pusher.min.js"))],
    "/echo.js": ["text/javascript", readFileSync(path.join(MODULES, "laravel-echo/dist/echo.iife.js"))],
  };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    if (req.method === "GET" && files[url.pathname]) {
      const [type, body] = files[url.pathname];
      res.writeHead(200, { "content-type": type });
      return res.end(body);
    }
    const form = new URLSearchParams(await readBody(req));
    const socketId = form.get("socket_id");
    const signer = url.searchParams.get("forge") === "1" ? forger : sdk;
    let answer;
    try {
      if (url.pathname === "/pusher/auth") {
        const channel = form.get("channel_name");
        const user = url.searchParams.get("user") || "anonymous";
        answer = channel.startsWith("presence-")
          ? signer.authorizeChannel(socketId, channel, { user_id: user, user_info: { name: `user ${user}` } })
          : signer.authorizeChannel(socketId, channel);
      } else if (url.pathname === "/pusher/user-auth") {
        answer = signer.authenticateUser(socketId, { id: url.searchParams.get("user") || "u1" });
      }
    } catch (e) {
      res.writeHead(400);
      return res.end(String(e));
    }
    if (!answer) {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(answer));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { base, close: () => new Promise((r) => server.close(r)) };
}

/** pusher-js options for the gateway (no TLS, WebSocket only, our auth endpoint). */
export function clientOptions(gw, auth, { user, forge } = {}) {
  const q = new URLSearchParams();
  if (user) q.set("user", user);
  if (forge) q.set("forge", "1");
  return {
    cluster: "local",
    wsHost: "127.0.0.1",
    wsPort: gw.ports.ws,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    channelAuthorization: { endpoint: `${auth.base}/pusher/auth?${q}`, transport: "ajax" },
    userAuthentication: { endpoint: `${auth.base}/pusher/user-auth?${q}`, transport: "ajax" },
  };
}

/** Resolves with the first `event` a pusher-js channel (or client) emits. */
export function once(emitter, event) {
  return new Promise((resolve) => {
    const f = (data, meta) => {
      emitter.unbind(event, f);
      resolve(data ?? meta);
    };
    emitter.bind(event, f);
  });
}

/** Bounded wait on a promise. */
export function within(ms, promise, what) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}
