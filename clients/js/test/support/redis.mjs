// A redis-server of the test's own: a free loopback port, a temporary directory, and
// append-only persistence (so the data survives a restart of Redis; `appendfsync`
// "everysec" unless told "always", which writes every command to disk before answering).
// Stopped by PID.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort, waitFor } from "./gateway.mjs";

export class Redis {
  static async start({ appendfsync = "everysec" } = {}) {
    const r = new Redis(await freePort());
    await r.spawn(appendfsync);
    return r;
  }

  constructor(port) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
    this.dir = mkdtempSync(path.join(os.tmpdir(), "pushgate-js-redis-"));
  }

  async spawn(appendfsync) {
    const which = spawnSync("sh", ["-c", "command -v redis-server || ls /usr/bin/redis-server"], { encoding: "utf8" });
    const bin = which.stdout.trim().split("\n")[0];
    if (!bin) throw new Error("no redis-server: run clients/js/test/deps.sh");
    this.child = spawn(bin, [
      "--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir,
      "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
      "--logfile", path.join(this.dir, "redis.log"), "--daemonize", "no",
    ], { stdio: "ignore" });
    this.pid = this.child.pid;
    this.exit = new Promise((resolve) => this.child.once("exit", resolve));
    await waitFor("redis-server PING", () => this.command("PING").then((r) => r.startsWith("+PONG")), 10000, 50);
  }

  /** One inline command; resolves to the raw first reply line. */
  command(line) {
    return new Promise((resolve, reject) => {
      const s = net.connect(this.port, "127.0.0.1");
      let buf = "";
      s.on("data", (d) => {
        buf += d;
        if (buf.includes("\r\n")) {
          s.end();
          resolve(buf.split("\r\n")[0]);
        }
      });
      s.on("error", reject);
      s.write(`${line}\r\n`);
    });
  }

  async stop() {
    if (this.child && this.child.exitCode === null) {
      process.kill(this.pid, "SIGKILL");
      await this.exit;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
