// Real pushgate gateways for the integration tests: each on free loopback ports, each
// stopped by its PID. The binary is target/release/pushgate of this checkout (built by
// test/support/build-gateway.mjs before the tests), or $PUSHGATE_BIN.
import { spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, writeFileSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");
export const BIN = process.env.PUSHGATE_BIN || path.join(ROOT, "target/release/pushgate");

/**
 * `n` distinct free loopback ports: each bound to port 0 while the others still are,
 * then all released (ports taken one after another may repeat: the kernel can hand a
 * port just released out again).
 */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", resolve);
      });
    }
    return servers.map((srv) => srv.address().port);
  } finally {
    await Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(() => resolve()))));
  }
}

/** A free loopback port (bound to port 0, then released). */
export async function freePort() {
  return (await freePorts(1))[0];
}

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitFor(what, fn, timeoutMs = 10000, everyMs = 20) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The exit of a child process, as a promise of {code, signal}. */
function exited(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

export class Gateway {
  /**
   * Starts a gateway. `settings`: config fields passed as --set FIELD=VALUE; `toml`:
   * extra configuration file text (for tables such as [[history]]); `ports`: reuse
   * given ports (a restart) instead of free ones.
   */
  static async start({ settings = {}, toml = "", ports, nodeId = "n1", env = {} } = {}) {
    for (let tries = 0; ; tries++) {
      let p = ports;
      if (!p) {
        const [ws, http, grpc] = await freePorts(3);
        p = { ws, http, grpc };
      }
      const gw = new Gateway(p, nodeId);
      try {
        await gw.spawn(settings, toml, env);
        return gw;
      } catch (e) {
        await gw.stop();
        // Another process took a "free" port between the check and the bind: try others.
        if (ports || tries >= 2 || !/Address already in use|address in use/i.test(gw.log())) throw e;
      }
    }
  }

  constructor(ports, nodeId) {
    this.ports = ports;
    this.nodeId = nodeId;
    this.wsUrl = `ws://127.0.0.1:${ports.ws}/ws`;
    this.httpUrl = `http://127.0.0.1:${ports.http}`;
    this.dir = mkdtempSync(path.join(os.tmpdir(), "pushgate-js-"));
    this.logFile = path.join(this.dir, "gateway.log");
  }

  async spawn(settings, toml, env) {
    const args = [
      "serve",
      "--ws-addr", `127.0.0.1:${this.ports.ws}`,
      "--http-addr", `127.0.0.1:${this.ports.http}`,
      "--grpc-addr", `127.0.0.1:${this.ports.grpc}`,
      "--node-id", this.nodeId,
      "--shards", "1",
    ];
    if (toml) {
      const file = path.join(this.dir, "pushgate.toml");
      writeFileSync(file, toml);
      args.push("--config", file);
    }
    for (const [k, v] of Object.entries(settings)) args.push("--set", `${k}=${v}`);
    const out = openSync(this.logFile, "a");
    // Ambient PUSHGATE_* variables would be read as settings: keep them out.
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PUSHGATE_")));
    this.child = spawn(BIN, args, { stdio: ["ignore", out, out], env: { ...clean, PUSHGATE_LOG: "warn", ...env } });
    closeSync(out);
    this.pid = this.child.pid;
    this.exit = exited(this.child);
    await waitFor(`the gateway on ${this.httpUrl}/livez (log: ${this.logFile})`, async () => {
      if (this.child.exitCode !== null) throw new Error(`gateway exited with ${this.child.exitCode}: ${this.log().slice(-500)}`);
      const r = await fetch(`${this.httpUrl}/livez`);
      return r.ok;
    });
  }

  log() {
    try {
      return readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }

  /** Sends a signal to the gateway's PID. */
  signal(sig) {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) process.kill(this.pid, sig);
  }

  /** SIGTERM (drain: clients get 1001) and wait for the exit. */
  async drain() {
    this.signal("SIGTERM");
    return this.exit;
  }

  /** Stops the gateway by PID (SIGKILL), waits for it, removes its files. */
  async stop() {
    if (this.child) {
      this.signal("SIGCONT");
      this.signal("SIGKILL");
      await this.exit;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** POST /publish; returns the parsed reply. `query`: e.g. "channel=news". */
  async publish(query, data, { binary = false } = {}) {
    const r = await fetch(`${this.httpUrl}/publish?${query}${binary ? "&binary=true" : ""}`, { method: "POST", body: data });
    const text = await r.text();
    if (!r.ok) throw new Error(`publish ${query}: ${r.status} ${text}`);
    return JSON.parse(text);
  }

  /** A counter or gauge from /metrics (summed over labels matching `labels`, e.g. 'reason="x"'). */
  async metric(name, labels = "") {
    const text = await (await fetch(`${this.httpUrl}/metrics`)).text();
    let sum = 0;
    let found = false;
    for (const line of text.split("\n")) {
      if (!line.startsWith(name)) continue;
      const rest = line.slice(name.length);
      if (!(rest.startsWith(" ") || rest.startsWith("{"))) continue;
      if (labels && !rest.includes(labels)) continue;
      sum += Number(line.split(" ").pop());
      found = true;
    }
    return found ? sum : undefined;
  }

  /** gRPC Disconnect (pushgate.v1): closes connection `conn` with `code`. */
  async disconnect(conn, code, reason = "test") {
    const { grpcUnary, field } = await import("./grpc.mjs");
    return grpcUnary(`127.0.0.1:${this.ports.grpc}`, "/pushgate.v1.Pushgate/Disconnect", [
      field.string(1, conn),
      field.varint(3, code),
      field.string(4, reason),
    ]);
  }
}

/** The configuration of history channels the recovery tests use. */
export function historyToml(channels = "chat:*", size = 1000, ttlMs = 600000) {
  return `[[history]]\nchannels = "${channels}"\nsize = ${size}\nttl_ms = ${ttlMs}\n`;
}


/** Why `pushgate config check` refuses this configuration (its first line), or undefined when it accepts it. */
export function configRefused(toml) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "pushgate-js-check-"));
  const file = path.join(dir, "check.toml");
  writeFileSync(file, toml);
  const r = spawnSync(BIN, ["config", "check", file], { encoding: "utf8" });
  rmSync(dir, { recursive: true, force: true });
  if (r.status === 0) return undefined;
  return (r.stderr || r.stdout || `exit ${r.status}`).trim().split("\n")[0].replace(/^.*?: configuration error: \S+: /, "");
}
