// Builds the gateway the integration tests run (cargo build --release -p pushgate, a
// no-op when it is up to date), unless PUSHGATE_BIN names a binary already built.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { BIN, ROOT } from "./gateway.mjs";

if (process.env.PUSHGATE_BIN) {
  if (!existsSync(BIN)) {
    console.error(`PUSHGATE_BIN=${BIN} does not exist`);
    process.exit(1);
  }
} else {
  console.error("building the gateway: cargo build --release -p pushgate");
  const r = spawnSync("cargo", ["build", "--release", "-p", "pushgate"], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) {
    console.error("cargo build --release -p pushgate failed");
    process.exit(1);
  }
}
