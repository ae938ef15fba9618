// Parsing the server's frames, channel names, token expiry.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseBinary, parseText, channelNameProblem, jwtExpiry } from "../../dist/pushgate.js";
import { fakeJwt } from "../support/unit.mjs";

const enc = (s) => [...Buffer.from(s)];

test("binary publication without history: [len][channel][payload]", () => {
  const pub = parseBinary(new Uint8Array([4, ...enc("news"), 1, 2, 3]));
  assert.equal(pub.channel, "news");
  assert.equal(pub.offset, undefined);
  assert.equal(pub.binary, true);
  assert.deepEqual([...pub.data], [1, 2, 3]);
});

test("binary publication without a channel: len 0", () => {
  const pub = parseBinary(new Uint8Array([0, 9, 8]));
  assert.equal(pub.channel, undefined);
  assert.deepEqual([...pub.data], [9, 8]);
});

test("binary publication on a history channel: [0xFF][len][channel][offset u64 BE][payload]", () => {
  const offset = [0, 0, 0, 1, 0, 0, 0, 42]; // 2^32 + 42
  const pub = parseBinary(new Uint8Array([0xff, 6, ...enc("chat:1"), ...offset, 7]));
  assert.equal(pub.channel, "chat:1");
  assert.equal(pub.offset, 2 ** 32 + 42);
  assert.deepEqual([...pub.data], [7]);
});

test("truncated binary frames are refused with a reason", () => {
  assert.throws(() => parseBinary(new Uint8Array([])), /empty/);
  assert.throws(() => parseBinary(new Uint8Array([5, 65])), /channel name/);
  assert.throws(() => parseBinary(new Uint8Array([0xff, 1, 65, 0, 0])), /offset/);
});

test("text messages: JSON objects with a type; malformed ones are refused", () => {
  assert.deepEqual(parseText('{"type":"pub","channel":"a","data":"x","offset":3}'), {
    type: "pub",
    channel: "a",
    data: "x",
    offset: 3,
  });
  assert.throws(() => parseText("nope"), /not JSON/);
  assert.throws(() => parseText("[1]"), /type/);
  assert.throws(() => parseText('{"type":"pub","data":5}'), /data/);
  assert.throws(() => parseText('{"type":"pub","data":"x","offset":-1}'), /offset/);
  assert.throws(() => parseText('{"type":"unrecoverable","channel":"a"}'), /epoch/);
  // Unknown types pass (a newer server).
  assert.equal(parseText('{"type":"presence","n":1}').type, "presence");
});

test("channel names follow the server's rule", () => {
  assert.equal(channelNameProblem("chat:1"), undefined);
  assert.equal(channelNameProblem("user:alice@x.org/inbox=1"), undefined);
  assert.match(channelNameProblem("a b"), /only ASCII/);
  assert.match(channelNameProblem(""), /length/);
  assert.match(channelNameProblem("x".repeat(129)), /length/);
});

test("jwtExpiry reads exp, and nothing from non-JWTs", () => {
  assert.equal(jwtExpiry(fakeJwt({ sub: "a", exp: 1767225600 })), 1767225600);
  assert.equal(jwtExpiry(fakeJwt({ sub: "a" })), undefined);
  assert.equal(jwtExpiry("opaque-token"), undefined);
  assert.equal(jwtExpiry("a.!!!.c"), undefined);
});
