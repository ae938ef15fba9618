// Backoff with full jitter and the close-code policy.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, drainDelay, closeAction, DEFAULT_BACKOFF } from "../../dist/pushgate.js";

test("full jitter: the delay is uniform in [0, min(max, min * 2^attempt))", () => {
  const opts = { minDelayMs: 500, maxDelayMs: 20000 };
  const bounds = [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000];
  bounds.forEach((bound, attempt) => {
    assert.equal(backoffDelay(attempt, opts, () => 0), 0);
    assert.equal(backoffDelay(attempt, opts, () => 0.5), bound / 2);
    assert.equal(backoffDelay(attempt, opts, () => 0.999999), bound - 1);
  });
});

test("the bound never exceeds maxDelayMs, even after very many attempts", () => {
  for (const attempt of [10, 31, 64, 1000, Number.MAX_SAFE_INTEGER]) {
    const d = backoffDelay(attempt, DEFAULT_BACKOFF, () => 0.999999);
    assert.ok(d < DEFAULT_BACKOFF.maxDelayMs && d >= DEFAULT_BACKOFF.maxDelayMs - 1, `attempt ${attempt}: ${d}`);
  }
});

test("clients that fail together spread out: 1000 delays with Math.random cover the window", () => {
  const delays = Array.from({ length: 1000 }, () => backoffDelay(3, DEFAULT_BACKOFF));
  const buckets = new Array(10).fill(0);
  for (const d of delays) {
    assert.ok(d >= 0 && d < 4000);
    buckets[Math.floor(d / 400)]++;
  }
  // Uniform: every tenth of the window gets some (the chance that one gets none is ~1e-45).
  assert.ok(buckets.every((n) => n > 0), `buckets ${buckets}`);
});

test("drain delay is spread over [0, spread)", () => {
  assert.equal(drainDelay(2000, () => 0), 0);
  assert.equal(drainDelay(2000, () => 0.75), 1500);
  assert.equal(drainDelay(0, () => 0.75), 0);
});

test("close policy: what each code leads to", () => {
  const table = {
    1000: "reconnect",
    1001: "drain",
    1002: "stop",
    1006: "reconnect",
    1007: "stop",
    1008: "reconnect",
    1009: "stop",
    1011: "reconnect",
    4001: "reconnect",
    4002: "reconnect",
    4003: "new-token",
    4008: "reconnect",
  };
  for (const [code, action] of Object.entries(table)) assert.equal(closeAction(Number(code)), action, `code ${code}`);
});
