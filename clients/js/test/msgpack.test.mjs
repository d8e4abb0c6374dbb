// The optional msgpack dialect (the Python client's): codec "msgpack" loads msgpackr, or pass one.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Packr } from "msgpackr";

import { RPCError, msgpackCodec } from "../src/index.js";
import { client, needsServer, nextEvent, useControl, waitFor } from "./harness.mjs";

describe("msgpack dialect", { timeout: 60_000, skip: needsServer }, () => {
  const control = useControl();

  test('codec "msgpack": calls, bytes, streams, errors, channel pushes', async () => {
    const server = await control.start();
    const c = await client(server.url, { codec: "msgpack" }).connect();
    try {
      assert.equal(c.protocol, "webshocket.v1"); // no recovery: the plain framework dialect
      assert.equal(await c.call("add", 2, 40), 42);
      const reply = await c.call("echo", new Uint8Array([0, 255, 7]), { nested: [1.5, null] });
      assert.deepEqual([...reply.args[0]], [0, 255, 7]); // msgpack bin both ways
      assert.deepEqual(reply.args[1], { nested: [1.5, null] });
      assert.deepEqual(await c.stream("ticks", 5).toArray(), [0, 1, 2, 3, 4]);
      await assert.rejects(c.call("fail", "no"), (/** @type {any} */ error) => error instanceof RPCError && error.codeName === "APPLICATION_ERROR");
      const pushed = nextEvent(c, "channel");
      await c.call("join", "news");
      await c.call("publish", "news", { n: 1 });
      assert.deepEqual((await pushed)[0], { n: 1 });
      const message = nextEvent(c, "message");
      c.send("hello");
      assert.deepEqual((await message)[0], { echo: "hello" });
    } finally {
      await c.close();
    }
  });

  test("a codec made from the caller's encoder, with a session on a server with recovery", async () => {
    const server = await control.start({ recovery: true, proxy: true });
    const packr = new Packr({ useRecords: false, mapsAsObjects: true });
    const c = client(server.url, { codec: msgpackCodec({ pack: (v) => packr.pack(v), unpack: (b) => packr.unpack(b) }) });
    /** @type {any[]} */
    const got = [];
    c.onChannel("news", (data) => got.push(data));
    await c.connect();
    try {
      assert.equal(c.protocol, "webshocket.v1+session");
      assert.equal(c.recovered, false);
      await c.call("join", "news");
      const back = nextEvent(c, "reconnect");
      await control.call("publish", { served_id: server.id, channel: "news", values: [1, 2, 3, 4, 5, 6], pause: 0.01, drop_at: [3] });
      assert.deepEqual(await back, [true]);
      await waitFor(() => got.length === 6);
      assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
    } finally {
      await c.close();
    }
  });
});
