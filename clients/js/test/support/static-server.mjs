// The origin of the browser tests' pages: an empty page at / and the library at
// /pushgate.js, over real loopback HTTP (Chromium's local-network-access checks block a
// page that is not itself local from opening ws://127.0.0.1).
import http from "node:http";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dist/pushgate.js");

export async function startStaticServer() {
  const server = http.createServer(async (req, res) => {
    if (req.url === "/pushgate.js") {
      res.writeHead(200, { "content-type": "text/javascript", "cache-control": "no-store" }).end(await readFile(DIST));
    } else if (req.url === "/") {
      res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>pushgate-client test</title>");
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  // close() waits for keep-alive connections a browser still holds (up to its idle
  // timeout, minutes): those are closed with it.
  const close = () => new Promise((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  return { url: `http://127.0.0.1:${server.address().port}/`, close };
}
