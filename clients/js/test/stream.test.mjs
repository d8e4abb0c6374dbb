// Streaming RPC: every chunk, abort (break, abort(), AbortSignal) reaching the server, errors.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { ConnectionClosedError, RPCError, RpcStream, TimeoutError, WebshocketClient } from "../src/index.js";
import { client, needsServer, useControl, waitFor } from "./harness.mjs";

describe("streams", { timeout: 60_000, skip: needsServer }, () => {
  const control = useControl();
  /** @type {WebshocketClient} */
  let c;
  /** @type {{id: string, url: string}} */
  let server;

  before(async () => {
    server = await control.start();
    c = await client(server.url).connect();
  });
  after(() => c.close());

  /** @param {string} tag */
  async function serverSawCancel(tag) {
    await waitFor(async () => (await control.call("server_state", { served_id: server.id })).events.includes(`cancelled ${tag}`), 5000, `the server cancelling ${tag}`);
  }

  test("for await gets every chunk in order, then ends", async () => {
    const chunks = [];
    const stream = c.stream("ticks", 100);
    assert.ok(stream instanceof RpcStream);
    for await (const chunk of stream) chunks.push(chunk);
    assert.deepEqual(chunks, Array.from({ length: 100 }, (_, i) => i));
    assert.deepEqual(await stream.next(), { value: undefined, done: true });
  });

  test("streamWith passes keyword arguments; toArray() collects", async () => {
    assert.deepEqual(await c.streamWith("ticks", { args: [3], kwargs: { interval: 0.01 } }).toArray(), [0, 1, 2]);
    assert.deepEqual(await c.stream("ticks", 0).toArray(), []);
  });

  test("several streams and calls at once keep their chunks apart", async () => {
    const [a, b, sum] = await Promise.all([c.stream("ticks", 20).toArray(), c.streamWith("ticks", { args: [10], kwargs: { interval: 0.001 } }).toArray(), c.call("add", 1, 2)]);
    assert.equal(a.length, 20);
    assert.equal(b.length, 10);
    assert.equal(sum, 3);
  });

  test("leaving the loop early sends __abort__: the server cancels the generator", async () => {
    const seen = [];
    for await (const chunk of c.stream("forever", "by-break")) {
      seen.push(chunk);
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, [0, 1, 2]);
    await serverSawCancel("by-break");
    assert.equal(await c.call("add", 1, 1), 2);
  });

  test("an AbortSignal cancels the stream on the server and the loop throws its reason", async () => {
    const controller = new AbortController();
    const seen = [];
    await assert.rejects(async () => {
      for await (const chunk of c.streamWith("forever", { args: ["by-signal"], signal: controller.signal })) {
        seen.push(chunk);
        if (seen.length === 2) controller.abort();
      }
    }, { name: "AbortError" });
    assert.deepEqual(seen, [0, 1]);
    await serverSawCancel("by-signal");
  });

  test("abort() while next() waits rejects it; AbortSignal.timeout bounds a stream", async () => {
    const slow = c.streamWith("ticks", { args: [5], kwargs: { interval: 1 } });
    assert.equal((await slow.next()).value, 0);
    const waiting = slow.next(); // the next chunk is a second away
    slow.abort(new Error("enough"));
    await assert.rejects(waiting, /enough/);
    assert.deepEqual(await slow.next(), { value: undefined, done: true });

    const stream = c.stream("forever", "by-method");
    assert.equal((await stream.next()).value, 0);
    stream.abort();
    await assert.rejects(stream.next(), { name: "AbortError" }); // chunks that had arrived are dropped
    assert.deepEqual(await stream.next(), { value: undefined, done: true });
    await serverSawCancel("by-method");

    const started = Date.now();
    await assert.rejects(c.streamWith("forever", { args: ["by-timeout"], signal: AbortSignal.timeout(150) }).toArray(), { name: "TimeoutError" });
    assert.ok(Date.now() - started < 2000);
    await serverSawCancel("by-timeout");
  });

  test("a signal aborted before the start sends nothing", async () => {
    const stream = c.streamWith("forever", { args: ["never"], signal: AbortSignal.abort() });
    await assert.rejects(stream.next(), { name: "AbortError" });
    assert.equal(await c.call("add", 2, 3), 5);
    const state = await control.call("server_state", { served_id: server.id });
    assert.ok(!state.events.includes("cancelled never"));
  });

  test("errors surface as typed errors from the loop", async () => {
    await assert.rejects(c.stream("no_such_stream").toArray(), (/** @type {any} */ error) => error instanceof RPCError && error.codeName === "METHOD_NOT_FOUND");
    const chunks = [];
    await assert.rejects(
      async () => {
        for await (const chunk of c.stream("broken")) chunks.push(chunk);
      },
      (/** @type {any} */ error) => {
        assert.ok(error instanceof RPCError);
        assert.equal(error.code, -32603);
        assert.match(String(error.response), /Stream aborted: /);
        return true;
      },
    );
    assert.deepEqual(chunks, [1]);
    await assert.rejects(c.stream("ticks", "many").toArray(), RPCError);
  });

  test("a plain method called as a stream gives its result as the one chunk", async () => {
    assert.deepEqual(await c.stream("add", 2, 2).toArray(), [4]);
  });

  test("the link dropping mid-stream ends it with ConnectionClosedError", async () => {
    const proxied = await control.start({ proxy: true });
    const other = await client(proxied.url, { retry: false }).connect();
    const stream = other.stream("forever", "dropped");
    assert.equal((await stream.next()).value, 0);
    await control.call("drop", { served_id: proxied.id });
    await assert.rejects(async () => {
      for await (const _ of stream);
    }, ConnectionClosedError);
    assert.equal(other.state, "closed");
    await assert.rejects(other.stream("ticks", 1).toArray(), ConnectionClosedError);
    await other.close();
  });

  test("a stream waits for a reconnect within its timeout", async () => {
    const proxied = await control.start({ proxy: true });
    const other = await client(proxied.url, { retryInterval: 400, maxRetryInterval: 400 }).connect();
    await control.call("drop", { served_id: proxied.id });
    await waitFor(() => other.reconnecting, 5000, "the drop being noticed");
    await assert.rejects(other.streamWith("ticks", { args: [2], timeout: 10 }).toArray(), TimeoutError);
    assert.deepEqual(await other.streamWith("ticks", { args: [2], timeout: 10_000 }).toArray(), [0, 1]);
    await other.close();
  });
});
