// The live-feed example's dev server: serves the page and the client library, and
// forwards the page's publish box to the gateway's internal HTTP API (which must stay
// private and has no CORS), so the page talks only to its own origin and to the
// gateway's WebSocket. A real application puts its own backend here, deciding who may
// publish what.
//
//   node examples/live-feed/server.mjs --port 8090 --gateway-http http://127.0.0.1:8081 \
//        --ws-url ws://127.0.0.1:8080/ws [--channel demo]
import http from "node:http";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FILES = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/index.html": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
  "/pushgate.js": ["../../clients/js/dist/pushgate.js", "text/javascript; charset=utf-8"],
};
const MAX_BODY = 64 * 1024;

/** Starts the server; resolves to { url, close() }. */
export async function startDemoServer({ port = 0, host = "127.0.0.1", gatewayHttp, wsUrl, channel = "demo" }) {
  const server = http.createServer((req, res) => {
    handle(req, res, { gatewayHttp, wsUrl, channel }).catch((e) => {
      res.writeHead(500, { "content-type": "text/plain" }).end(`error: ${e.message}\n`);
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  return {
    url: `http://${host}:${addr.port}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function handle(req, res, cfg) {
  const url = new URL(req.url, "http://x");
  if (req.method === "GET" && FILES[url.pathname]) {
    const [file, type] = FILES[url.pathname];
    const body = await readFile(path.join(HERE, file));
    res.writeHead(200, { "content-type": type, "cache-control": "no-store" }).end(body);
    return;
  }
  if (req.method === "GET" && url.pathname === "/config.json") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ wsUrl: cfg.wsUrl, channel: cfg.channel, gatewayHttp: cfg.gatewayHttp }));
    return;
  }
  if (req.method === "POST" && url.pathname === "/api/publish") {
    // Only ?channel= is passed on: the page cannot publish to all, to a user or to a connection.
    const channel = url.searchParams.get("channel") ?? "";
    const body = await readBody(req);
    if (body === undefined) {
      res.writeHead(413, { "content-type": "text/plain" }).end("too large\n");
      return;
    }
    const r = await fetch(`${cfg.gatewayHttp}/publish?channel=${encodeURIComponent(channel)}`, { method: "POST", body });
    res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "text/plain" }).end(await r.text());
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : def;
  };
  const s = await startDemoServer({
    port: Number(arg("port", "8090")),
    gatewayHttp: arg("gateway-http", "http://127.0.0.1:8081"),
    wsUrl: arg("ws-url", "ws://127.0.0.1:8080/ws"),
    channel: arg("channel", "demo"),
  });
  console.log(`live feed: ${s.url}`);
}
