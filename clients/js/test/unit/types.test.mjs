// The published types (dist/*.d.ts) compile in a strict TypeScript application that
// does not skip library checks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const JS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

test("dist/*.d.ts: a strict consumer compiles", () => {
  const tsc = path.join(JS, "node_modules/typescript/bin/tsc");
  const r = spawnSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck", "false", "--target", "es2020",
    "--module", "es2020", "--moduleResolution", "bundler", "--lib", "es2020,dom", "test/types/consumer.ts"], { cwd: JS, encoding: "utf8" });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
