// Pushed packets: channel messages (all, or per channel), broadcasts, custom packets, listeners.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { WebshocketClient } from "../src/index.js";
import { client, needsServer, nextEvent, sleep, useControl, waitFor } from "./harness.mjs";

describe("pushes", { timeout: 60_000, skip: needsServer }, () => {
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

  test("channel messages: on('channel') gets all, onChannel(name) its own", async () => {
    /** @type {any[]} */
    const all = [];
    /** @type {any[]} */
    const news = [];
    const stopAll = c.on("channel", (data, packet) => all.push([packet.channel, data]));
    const stopNews = c.onChannel("news", (data, packet) => news.push([data, packet.source]));
    assert.deepEqual(await c.call("join", "news"), ["news"]);
    assert.deepEqual(await c.call("join", "sport"), ["news", "sport"]);
    await c.call("publish", "news", { headline: "one" });
    await c.call("publish", "sport", 2);
    await c.call("publish", "weather", "not subscribed");
    await control.call("publish", { served_id: server.id, channel: "news", values: [3, 4] });
    await waitFor(() => all.length === 4, 5000, "four channel messages");
    assert.deepEqual(all, [["news", { headline: "one" }], ["sport", 2], ["news", 3], ["news", 4]]);
    assert.deepEqual(news, [[{ headline: "one" }, 2], [3, 2], [4, 2]]);
    stopAll();
    stopNews();
    await c.call("publish", "news", 5);
    await sleep(100);
    assert.equal(all.length, 4); // unsubscribed listeners get nothing more
  });

  test("broadcasts reach every client", async () => {
    const other = await client(server.url).connect();
    try {
      const mine = nextEvent(c, "broadcast");
      const theirs = nextEvent(other, "broadcast");
      await other.call("shout", { alert: true });
      const [[data, packet], [data2]] = await Promise.all([mine, theirs]);
      assert.deepEqual(data, { alert: true });
      assert.equal(packet.source, 1);
      assert.deepEqual(data2, { alert: true });
    } finally {
      await other.close();
    }
  });

  test("custom packets (connection.send) are message events; packet sees every push", async () => {
    /** @type {number[]} */
    const sources = [];
    const stop = c.on("packet", (packet) => sources.push(packet.source));
    const message = nextEvent(c, "message");
    await c.call("push", ["any", { json: 1 }]);
    const [data, packet] = await message;
    assert.deepEqual(data, ["any", { json: 1 }]);
    assert.equal(packet.source, 4);
    await c.call("shout", "b");
    await waitFor(() => sources.length === 2);
    assert.deepEqual(sources, [4, 1]);
    stop();
  });

  test("a listener that throws goes to the error event, and the others still run", async () => {
    /** @type {unknown[]} */
    const errors = [];
    /** @type {any[]} */
    const got = [];
    const stops = [
      c.on("error", (error) => errors.push(error)),
      c.on("message", () => {
        throw new Error("listener bug");
      }),
      c.on("message", async () => {
        throw new Error("async listener bug");
      }),
      c.on("message", (data) => got.push(data)),
    ];
    await c.call("push", "x");
    await waitFor(() => got.length === 1 && errors.length === 2);
    assert.deepEqual(errors.map((e) => /** @type {Error} */ (e).message).sort(), ["async listener bug", "listener bug"]);
    for (const stop of stops) stop();
    assert.equal(await c.call("add", 1, 2), 3);
  });

  test("channel packets on a server without recovery carry no position and are never dropped", async () => {
    /** @type {any[]} */
    const got = [];
    const stop = c.onChannel("dup", (data, packet) => got.push([data, packet.offset ?? null]));
    await c.call("join", "dup");
    await control.call("publish", { served_id: server.id, channel: "dup", values: ["same", "same"] });
    await waitFor(() => got.length === 2);
    assert.deepEqual(got, [["same", null], ["same", null]]);
    stop();
  });
});
