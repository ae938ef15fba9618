// haproxy (Debian's) in front of two gateways, with the loopback variant of
// deploy/haproxy/haproxy.cfg that the e2e test uses (render_haproxy_cfg in deploy/lib.sh).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, openSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePorts, ROOT, waitFor } from "./gateway.mjs";

export class Haproxy {
  /** `nodes`: two Gateways (their ws and http ports are used). */
  static async start(nodes) {
    const h = new Haproxy(...(await freePorts(2)));
    await h.spawn(nodes);
    return h;
  }

  constructor(port, statsPort) {
    this.port = port;
    this.statsPort = statsPort;
    this.wsUrl = `ws://127.0.0.1:${port}/ws`;
    this.dir = mkdtempSync(path.join(os.tmpdir(), "pushgate-js-haproxy-"));
  }

  async spawn([a, b]) {
    const render = spawnSync(
      "bash",
      ["-c", 'source deploy/lib.sh && render_haproxy_cfg "$@"', "render", "deploy/haproxy/haproxy.cfg",
        String(this.port), String(this.statsPort), "4000", String(a.ports.ws), String(a.ports.http), String(b.ports.ws), String(b.ports.http)],
      { cwd: ROOT, encoding: "utf8" },
    );
    if (render.status !== 0) throw new Error(`render_haproxy_cfg: ${render.stderr}`);
    const cfg = path.join(this.dir, "haproxy.cfg");
    writeFileSync(cfg, render.stdout);
    const bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => spawnSync("test", ["-x", p]).status === 0);
    if (!bin) throw new Error("no haproxy: run clients/js/test/deps.sh");
    const log = openSync(path.join(this.dir, "haproxy.log"), "a");
    this.child = spawn(bin, ["-db", "-f", cfg], { stdio: ["ignore", log, log] });
    this.pid = this.child.pid;
    this.exit = new Promise((resolve) => this.child.once("exit", resolve));
    await waitFor("haproxy sees both nodes UP", async () => {
      const s = await this.status();
      return s.pushgate1 === "UP" && s.pushgate2 === "UP";
    }, 15000, 100);
  }

  /** Server statuses from the stats CSV: { pushgate1: "UP", pushgate2: "DOWN" }. */
  async status() {
    const text = await (await fetch(`http://127.0.0.1:${this.statsPort}/stats;csv`)).text();
    const lines = text.split("\n");
    const cols = lines[0].replace(/^# /, "").split(",");
    const out = {};
    for (const line of lines.slice(1)) {
      const f = line.split(",");
      if (f[0] === "pushgate" && f[1]?.startsWith("pushgate")) out[f[1]] = f[cols.indexOf("status")];
    }
    return out;
  }

  async stop() {
    if (this.child && this.child.exitCode === null) {
      process.kill(this.pid, "SIGKILL");
      await this.exit;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
