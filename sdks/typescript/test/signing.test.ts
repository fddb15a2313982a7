import assert from "node:assert/strict";
import { test } from "node:test";

import { SignatureError, sign, verify } from "../src/index.js";

// The test vectors of docs/protocol.md, section 4.
const VECTORS: Array<[string, string]> = [
  ['{"a":1}', "v1=25e079f0ade4766fd01176738fe281c3bc05c399d51f7ee8865b86d293159742"],
  ["", "v1=feedb4b16dc2e92285c54c96b90a6a309a7bc23401442e1695eca1af5540f231"],
];

test("sign matches the protocol's test vectors", () => {
  for (const [body, signature] of VECTORS) {
    assert.deepEqual(sign("example-key", body, 1700000000), {
      "X-Loom-Timestamp": "1700000000",
      "X-Loom-Signature": signature,
    });
  }
});

test("verify accepts a valid signature inside the window, in any header case", () => {
  const headers = { "x-loom-timestamp": "1700000000", "x-loom-signature": VECTORS[0]![1] };
  assert.equal(verify("example-key", '{"a":1}', headers, { now: 1700000000 + 299 }), 1700000000);
  assert.equal(verify("example-key", '{"a":1}', headers, { now: 1700000000 - 299 }), 1700000000);
});

test("verify refuses what the protocol refuses", () => {
  const ok = sign("k", "body", 1700000000);
  const cases: Array<[string, Record<string, string>, string, RegExp]> = [
    ["missing", {}, "body", /missing/],
    ["stale", ok, "body", /away from now/],
    ["tampered body", ok, "bodx", /does not match/],
    ["wrong key", sign("other", "body", 1700000000), "body", /does not match/],
    ["two entries", { ...ok, "X-Loom-Signature": `${ok["X-Loom-Signature"]},${ok["X-Loom-Signature"]}` }, "body", /exactly one/],
    ["unknown scheme", { ...ok, "X-Loom-Signature": ok["X-Loom-Signature"]!.replace("v1=", "v0=") }, "body", /exactly one/],
    ["fractional timestamp", { ...ok, "X-Loom-Timestamp": "1700000000.5" }, "body", /whole unix seconds/],
  ];
  for (const [name, headers, body, message] of cases) {
    const now = name === "stale" ? 1700000000 + 301 : 1700000000;
    assert.throws(() => verify("k", body, headers, { now }), (error: unknown) => {
      assert.ok(error instanceof SignatureError, name);
      assert.match(error.message, message, name);
      return true;
    });
  }
});
