// RPC: results, every error code, timeouts, aborts, custom packets, against our Python server.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ConnectionClosedError,
  ErrorCode,
  RPCError,
  TimeoutError,
  WebshocketClient,
  WebshocketError,
} from "../src/index.js";
import { WebSocket, client, needsServer, nextEvent, useControl } from "./harness.mjs";

describe("RPC", { timeout: 60_000, skip: needsServer }, () => {
  const control = useControl();
  /** @type {WebshocketClient} */
  let c;
  /** @type {{id: string, url: string}} */
  let server;

  before(async () => {
    server = await control.start();
    c = client(server.url);
    assert.equal(c.state, "disconnected");
    assert.equal(await c.connect(), c);
  });
  after(() => c.close());

  test("connected in the JSON dialect, without a session on a server without recovery", () => {
    assert.equal(c.state, "connected");
    assert.equal(c.connected, true);
    assert.equal(c.protocol, "webshocket.json"); // offered with webshocket.json+session; no recovery
    assert.equal(c.recovered, null);
  });

  test("call resolves with the result", async () => {
    assert.equal(await c.call("add", 10, 20), 30);
    assert.deepEqual(await c.call("echo", "é€😀", null, [1, { a: true }]), { args: ["é€😀", null, [1, { a: true }]], kwargs: {} });
  });

  test("callWith passes keyword arguments", async () => {
    assert.deepEqual(await c.callWith("echo", { args: [1], kwargs: { name: "x", n: 2.5 } }), {
      args: [1],
      kwargs: { name: "x", n: 2.5 },
    });
    assert.equal(await c.callWith("add", { kwargs: { a: 1, b: 2 } }), 3);
  });

  test("concurrent calls get their own replies", async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => c.call("add", i, i)));
    assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => 2 * i));
    const slow = c.call("slow", 0.2);
    assert.equal(await c.call("add", 1, 1), 2); // not behind the slow one
    assert.equal(await slow, "done");
  });

  test("a large payload (fragmented frames) both ways", async () => {
    const big = "x".repeat(200_000);
    const reply = await c.call("echo", big);
    assert.equal(reply.args[0].length, big.length);
  });

  /**
   * @param {Promise<unknown>} promise
   * @param {number} code
   * @param {string} name
   * @param {RegExp} message
   */
  async function rejectsWith(promise, code, name, message) {
    await assert.rejects(promise, (/** @type {any} */ error) => {
      assert.ok(error instanceof RPCError, `expected an RPCError, got ${error}`);
      assert.ok(error instanceof WebshocketError);
      assert.equal(error.code, code);
      assert.equal(error.codeName, name);
      assert.equal(ErrorCode[/** @type {keyof typeof ErrorCode} */ (name)], code);
      assert.match(String(error.response), message);
      assert.match(error.message, new RegExp(`^${name} \\(${code}\\) from '`));
      return true;
    });
  }

  test("each error code of the protocol is a typed RPCError", async () => {
    await rejectsWith(c.call("no_such_method"), -32601, "METHOD_NOT_FOUND", /no_such_method/);
    await rejectsWith(c.call("add", 1), -32602, "INVALID_PARAMS", /./);
    await rejectsWith(c.call("crash"), -32603, "INTERNAL_SERVER_ERROR", /./);
    assert.equal(await c.call("limited"), "ok");
    await rejectsWith(c.call("limited"), -32000, "RATE_LIMIT_EXCEEDED", /./);
    await rejectsWith(c.call("fail", "not today"), -32001, "APPLICATION_ERROR", /not today/);
    await rejectsWith(c.call("secret"), -32002, "ACCESS_DENIED", /./);
    assert.equal(await c.call("add", 2, 2), 4); // errors leave the connection usable
  });

  test("no reply within the timeout: TimeoutError", async () => {
    const started = Date.now();
    await assert.rejects(c.callWith("slow", { args: [2], timeout: 150 }), (/** @type {any} */ error) => {
      assert.ok(error instanceof TimeoutError && error instanceof WebshocketError, String(error));
      assert.match(error.message, /'slow' got no response within 150 ms/);
      return true;
    });
    assert.ok(Date.now() - started < 1500);
    const impatient = client(server.url, { timeout: 100 });
    await impatient.connect();
    try {
      await assert.rejects(impatient.call("slow", 1), TimeoutError); // the client's default timeout
      assert.equal(await impatient.callWith("slow", { args: [0.3], timeout: null }), "done");
    } finally {
      await impatient.close();
    }
  });

  test("an aborted call rejects with the signal's reason", async () => {
    const controller = new AbortController();
    const call = c.callWith("slow", { args: [1], signal: controller.signal });
    setTimeout(() => controller.abort(new Error("user gave up")), 50);
    await assert.rejects(call, /user gave up/);
    await assert.rejects(c.callWith("add", { args: [1, 2], signal: AbortSignal.abort() }), { name: "AbortError" });
  });

  test("send() a custom packet; the server's connection.send() is a message event", async () => {
    const echoed = nextEvent(c, "message");
    c.send({ hello: ["world", 1] });
    const [data, packet] = await echoed;
    assert.deepEqual(data, { echo: { hello: ["world", 1] } });
    assert.equal(packet.source, 4);
  });

  test("arguments that cannot be encoded reject without sending", async () => {
    await assert.rejects(c.call("echo", 10n), TypeError);
    assert.equal(await c.call("add", 1, 2), 3);
  });

  test("a client that is not connected refuses calls at once", async () => {
    const idle = client(server.url);
    await assert.rejects(idle.call("add", 1, 2), (/** @type {any} */ error) => error instanceof ConnectionClosedError && /not connected/.test(error.message));
    assert.throws(() => idle.send("x"), ConnectionClosedError);
    await idle.close();
    assert.equal(idle.state, "closed");
  });

  test("calls made while connect() runs wait for it", async () => {
    const early = client(server.url);
    const connecting = early.connect();
    assert.equal(early.state, "connecting");
    const result = early.call("add", 5, 6);
    await connecting;
    assert.equal(await result, 11);
    await early.close();
  });

  test("close() ends calls in flight with ConnectionClosedError, then the state is closed", async () => {
    const other = client(server.url);
    await other.connect();
    const pendingFails = assert.rejects(other.call("slow", 5), ConnectionClosedError);
    await other.close();
    await pendingFails;
    assert.equal(other.state, "closed");
    assert.equal(other.closeCode, 1000);
  });

  test("an unreachable server: connect() fails with ConnectionFailedError after its attempts", async () => {
    const states = /** @type {string[]} */ ([]);
    const nowhere = new WebshocketClient("ws://127.0.0.1:9", { WebSocket, maxRetryAttempt: 2, retryInterval: 10 });
    nowhere.on("state", (state) => states.push(state));
    await assert.rejects(nowhere.connect(), (/** @type {any} */ error) => {
      assert.equal(error.name, "ConnectionFailedError");
      assert.match(error.message, /All connection attempts failed after multiple retries\. \(2 attempts to ws:\/\/127\.0\.0\.1:9/);
      return true;
    });
    assert.deepEqual(states, ["connecting", "disconnected"]);
  });

  test("bad arguments are refused when the client is made", () => {
    assert.throws(() => new WebshocketClient("http://127.0.0.1:1", { WebSocket }), TypeError);
    assert.throws(() => new WebshocketClient("ws://127.0.0.1:1", { WebSocket, codec: /** @type {any} */ ("xml") }), TypeError);
    assert.throws(() => new WebshocketClient("ws://127.0.0.1:1", { WebSocket: /** @type {any} */ ("nope") }), /No WebSocket implementation/);
  });
});
