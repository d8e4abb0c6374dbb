// Sessions and recovery (docs/protocol.md): a dropped link resumes the session and every missed
// channel message arrives exactly once, in order; forged, used, expired or closed sessions do not.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { client, needsServer, nextEvent, sleep, useControl, waitFor } from "./harness.mjs";

const range = (/** @type {number} */ from, /** @type {number} */ to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("sessions", { timeout: 90_000, skip: needsServer }, () => {
  const control = useControl();

  /**
   * A connected client subscribed to `channel`, collecting its messages.
   *
   * @param {string} url
   * @param {string} channel
   * @param {import("../src/index.js").ClientOptions} [options]
   */
  async function subscriber(url, channel, options = {}) {
    const c = client(url, options);
    /** @type {any[]} */
    const got = [];
    /** @type {boolean[]} */
    const reconnects = [];
    c.onChannel(channel, (data) => got.push(data));
    c.on("reconnect", (recovered) => reconnects.push(recovered));
    await c.connect();
    return { c, got, reconnects };
  }

  test("a dropped link resumes the session: every message exactly once, in order, reconnect(true)", async () => {
    const server = await control.start({ recovery: true, proxy: true });
    const { c, got, reconnects } = await subscriber(server.url, "news");
    try {
      assert.equal(c.protocol, "webshocket.json+session");
      assert.equal(c.recovered, false); // a new session
      assert.equal(typeof c.session.token, "string");
      const firstToken = c.session.token;
      assert.deepEqual(await c.call("join", "news"), ["news"]);
      await c.call("remember", "cart", [1, 2, 3]);
      // 300 messages, 4 ms apart; the link is cut twice while they flow
      const disconnects = /** @type {number[]} */ ([]);
      c.on("disconnect", (code) => disconnects.push(code));
      await control.call("publish", { served_id: server.id, channel: "news", values: range(1, 300), pause: 0.004, drop_at: [60, 180] });
      await waitFor(() => got.length >= 300, 20_000, "300 messages");
      await sleep(200); // nothing more (no repeats) arrives
      assert.deepEqual(got, range(1, 300));
      assert.deepEqual(disconnects, [1006, 1006]);
      assert.deepEqual(reconnects, [true, true]);
      assert.equal(c.recovered, true);
      assert.notEqual(c.session.token, firstToken); // a new token on every connection
      assert.equal(await c.call("whoami"), "user-1"); // on_connect did not run again
      assert.deepEqual(await c.call("recall", "cart"), [1, 2, 3]);
      const state = await control.call("server_state", { served_id: server.id });
      assert.equal(state.connects, 1);
      assert.equal(state.sessions_resumed, 2);
      const [epoch, offset] = c.session.positions.news;
      assert.equal(typeof epoch, "string");
      assert.equal(offset, 300);
      await c.call("publish", "news", "after"); // the subscription came back with the session
      await waitFor(() => got.length === 301);
      assert.equal(got[300], "after");
    } finally {
      await c.close();
    }
  });

  test("resume a stored session in a new client (a page reload): recovered, missed messages first", async () => {
    const server = await control.start({ recovery: true, proxy: true });
    const first = await subscriber(server.url, "news", { retry: false });
    await first.c.call("join", "news");
    await control.call("publish", { served_id: server.id, channel: "news", values: [1, 2, 3] });
    await waitFor(() => first.got.length === 3);
    const saved = JSON.parse(JSON.stringify(first.c.session)); // what a page would keep in sessionStorage
    await control.call("drop", { served_id: server.id }); // the page goes away without a close frame
    await waitFor(() => first.c.state === "closed");
    await control.call("publish", { served_id: server.id, channel: "news", values: [4, 5, 6] });

    const second = await subscriber(server.url, "news", { resume: saved });
    try {
      assert.equal(second.c.recovered, true);
      await waitFor(() => second.got.length === 3);
      assert.deepEqual(second.got, [4, 5, 6]);
      assert.equal(await second.c.call("whoami"), "user-1");
      // the token resumes once: the same stored session again is a new session
      const third = await subscriber(server.url, "news", { resume: saved });
      assert.equal(third.c.recovered, false);
      assert.equal(await third.c.call("whoami"), "user-2");
      await third.c.close();
    } finally {
      await second.c.close();
    }
  });

  test("a forged token starts a new session (recovered false)", async () => {
    const server = await control.start({ recovery: true });
    const forged = await subscriber(server.url, "news", { resume: { token: "forged-" + "x".repeat(40), positions: { news: ["e", 5] } } });
    try {
      assert.equal(forged.c.recovered, false);
      assert.equal(await forged.c.call("whoami"), "user-1"); // on_connect ran
      assert.notEqual(forged.c.session.token, "forged-" + "x".repeat(40));
    } finally {
      await forged.c.close();
    }
  });

  test("an expired session starts a new one: reconnect(false)", async () => {
    const server = await control.start({ recovery: { session_ttl: 0.3 }, proxy: true });
    const { c, reconnects } = await subscriber(server.url, "news", { retryInterval: 1500, maxRetryInterval: 1500 });
    try {
      await c.call("join", "news");
      await control.call("drop", { served_id: server.id });
      await waitFor(() => reconnects.length === 1, 15_000, "the reconnect");
      assert.deepEqual(reconnects, [false]);
      assert.equal(await c.call("whoami"), "user-2");
      assert.deepEqual(await c.call("join", "news"), ["news"]); // the application subscribes again
    } finally {
      await c.close();
    }
  });

  test("close() ends the session for good", async () => {
    const server = await control.start({ recovery: true });
    const { c } = await subscriber(server.url, "news");
    await c.call("join", "news");
    const saved = c.session;
    await c.close();
    const again = await subscriber(server.url, "news", { resume: saved });
    assert.equal(again.c.recovered, false);
    await again.c.close();
  });

  test("another connection resuming the session closes this one with 4009, which does not reconnect", async () => {
    const server = await control.start({ recovery: true });
    const { c } = await subscriber(server.url, "news");
    const dropped = nextEvent(c, "disconnect");
    const thief = await subscriber(server.url, "news", { resume: c.session });
    try {
      assert.equal(thief.c.recovered, true);
      assert.equal((await dropped)[0], 4009);
      await sleep(200);
      assert.equal(c.state, "closed");
      assert.equal(await thief.c.call("whoami"), "user-1");
    } finally {
      await thief.c.close();
      await c.close();
    }
  });

  test("session: false asks for none; positions are still tracked", async () => {
    const server = await control.start({ recovery: true });
    const { c, got } = await subscriber(server.url, "news", { session: false });
    try {
      assert.equal(c.protocol, "");
      assert.equal(c.recovered, null);
      assert.equal(c.session.token, null);
      await c.call("join", "news");
      await c.call("publish", "news", "x");
      await waitFor(() => got.length === 1);
      assert.equal(c.session.positions.news[1], 1);
    } finally {
      await c.close();
    }
  });
});
