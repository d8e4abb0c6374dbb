// The pure parts, without a server: positions (what a resume may repeat), backoff, message bytes,
// the JSON codec, error names.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { messageBytes } from "../src/codec.js";
import {
  ErrorCode,
  Positions,
  RPCError,
  WebshocketError,
  backoffDelay,
  errorCodeName,
  jsonCodec,
} from "../src/index.js";

describe("positions", () => {
  test("a repeat (same epoch, offset not above the last) is dropped; a new epoch starts over", () => {
    const positions = new Positions();
    const at = (/** @type {string} */ epoch, /** @type {number} */ offset, channel = "news") => positions.accept({ channel, epoch, offset });
    assert.equal(at("e1", 1), true);
    assert.equal(at("e1", 2), true);
    assert.equal(at("e1", 2), false); // a resume sending it again
    assert.equal(at("e1", 1), false);
    assert.equal(at("e1", 5), true); // gaps are the server's business
    assert.equal(at("e1", 1, "sport"), true); // per channel
    assert.equal(at("e2", 1), true); // a new history
    assert.equal(at("e1", 6), true); // another epoch again: not comparable, kept
    assert.deepEqual(positions.toJSON(), { sport: ["e1", 1], news: ["e1", 6] });
  });

  test("packets without a full position are always new and change nothing", () => {
    const positions = new Positions();
    assert.equal(positions.accept({ channel: "news" }), true);
    assert.equal(positions.accept({ channel: "news", epoch: "e", offset: null }), true);
    assert.equal(positions.accept({ epoch: "e", offset: 1 }), true);
    assert.deepEqual(positions.toJSON(), {});
  });

  test("at most max channels, the least recently updated forgotten first", () => {
    const positions = new Positions(2);
    positions.accept({ channel: "a", epoch: "e", offset: 1 });
    positions.accept({ channel: "b", epoch: "e", offset: 1 });
    positions.accept({ channel: "a", epoch: "e", offset: 2 });
    positions.accept({ channel: "c", epoch: "e", offset: 1 });
    assert.deepEqual(Object.keys(positions.toJSON()), ["a", "c"]);
  });

  test("a stored session's positions seed it; malformed entries are ignored", () => {
    const positions = new Positions(10, /** @type {any} */ ({ news: ["e", 4], bad: ["e"], worse: "x", float: ["e", 1.5] }));
    assert.deepEqual(positions.toJSON(), { news: ["e", 4] });
    assert.equal(positions.accept({ channel: "news", epoch: "e", offset: 4 }), false);
    assert.equal(positions.accept({ channel: "news", epoch: "e", offset: 5 }), true);
  });
});

describe("backoff", () => {
  test("between half and all of min(max, interval * 2**attempt)", () => {
    assert.equal(backoffDelay(0, 100, 1000, () => 0), 50);
    assert.equal(backoffDelay(0, 100, 1000, () => 0.999999) < 100, true);
    assert.equal(backoffDelay(3, 100, 1000, () => 0), 400);
    assert.equal(backoffDelay(4, 100, 1000, () => 0), 500); // capped at 1000
    assert.equal(backoffDelay(4, 100, 1000, () => 1), 1000);
    assert.equal(backoffDelay(10_000, 100, 1000, () => 0.5), 750); // no overflow
    for (let attempt = 0; attempt < 8; attempt++) {
      const ceiling = Math.min(5000, 200 * 2 ** attempt);
      const delay = backoffDelay(attempt, 200, 5000);
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `${attempt}: ${delay}`);
    }
  });
});

describe("message bytes and the JSON codec", () => {
  const packet = { source: 2, data: { text: "é€😀" }, channel: "news" };
  const text = JSON.stringify(packet);
  const bytes = new TextEncoder().encode(text);

  test("every shape a WebSocket implementation gives decodes to the packet", async () => {
    assert.deepEqual(jsonCodec.decode(/** @type {string} */ (messageBytes(text))), packet); // a text message
    assert.deepEqual(jsonCodec.decode(/** @type {Uint8Array} */ (messageBytes(bytes.buffer.slice(0)))), packet); // ArrayBuffer
    assert.deepEqual(jsonCodec.decode(/** @type {Uint8Array} */ (messageBytes(Buffer.from(text)))), packet); // ws: Buffer
    const padded = new Uint8Array(bytes.length + 6);
    padded.set(bytes, 3);
    assert.deepEqual(jsonCodec.decode(/** @type {Uint8Array} */ (messageBytes(padded.subarray(3, 3 + bytes.length)))), packet); // a view
    const parts = [Buffer.from(bytes.subarray(0, 5)), Buffer.from(bytes.subarray(5))];
    assert.deepEqual(jsonCodec.decode(/** @type {Uint8Array} */ (messageBytes(parts))), packet); // ws: fragments
    const blob = messageBytes(new Blob([bytes])); // browsers without binaryType = "arraybuffer"
    assert.ok(blob instanceof Promise);
    assert.deepEqual(jsonCodec.decode(await blob), packet);
    assert.throws(() => messageBytes(42), TypeError);
  });

  test("the JSON codec writes compact JSON text and names its subprotocols", () => {
    assert.equal(jsonCodec.encode({ source: 4, data: [1] }), '{"source":4,"data":[1]}');
    assert.equal(jsonCodec.subprotocol, "webshocket.json");
    assert.equal(jsonCodec.sessionSubprotocol, "webshocket.json+session");
    assert.equal(jsonCodec.required, false);
  });
});

describe("errors", () => {
  test("codes have the protocol's names", () => {
    assert.deepEqual(ErrorCode, {
      METHOD_NOT_FOUND: -32601,
      INVALID_PARAMS: -32602,
      INTERNAL_SERVER_ERROR: -32603,
      RATE_LIMIT_EXCEEDED: -32000,
      APPLICATION_ERROR: -32001,
      ACCESS_DENIED: -32002,
    });
    assert.equal(errorCodeName(-32002), "ACCESS_DENIED");
    assert.equal(errorCodeName(1), "UNKNOWN");
    const error = new RPCError("add", -32601, "Method 'add' not found");
    assert.ok(error instanceof WebshocketError && error instanceof Error);
    assert.equal(error.name, "RPCError");
    assert.equal(error.message, "METHOD_NOT_FOUND (-32601) from 'add': Method 'add' not found");
    assert.equal(new RPCError("x", 7, { why: 1 }).message, 'UNKNOWN (7) from \'x\': {"why":1}');
  });
});

describe("the package", () => {
  test("the module exports exactly what index.d.ts declares", async () => {
    const exported = Object.keys(await import("../src/index.js")).sort();
    const types = readFileSync(new URL("../src/index.d.ts", import.meta.url), "utf8");
    const declared = [...types.matchAll(/^export declare (?:const|class|function) (\w+)/gm)].map((m) => m[1]).sort();
    assert.deepEqual(exported, declared);
  });
});
