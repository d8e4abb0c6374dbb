// Reconnect with backoff: a server restarted on the same port, a dropped link, codes that end
// the client, giving up, close() during an outage.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ConnectionClosedError, ConnectionFailedError, TimeoutError } from "../src/index.js";
import { client, needsServer, nextEvent, sleep, useControl, waitFor } from "./harness.mjs";

describe("reconnect", { timeout: 90_000, skip: needsServer }, () => {
  const control = useControl();

  test("a server restarted on the same port: in-flight calls fail, idempotent ones are re-sent, later calls work", async () => {
    const server = await control.start();
    const c = client(server.url);
    /** @type {any[]} */
    const events = [];
    /** @type {string[]} */
    const states = [];
    c.on("disconnect", (code) => events.push(["disconnect", code]));
    c.on("reconnect", (recovered) => events.push(["reconnect", recovered]));
    c.on("state", (state) => states.push(state));
    await c.connect();
    try {
      // (each expected rejection is awaited from the start: it may come before the test gets there)
      const plainFails = assert.rejects(c.callWith("slow", { args: [30], timeout: 60_000 }), (/** @type {any} */ error) => {
        assert.ok(error instanceof ConnectionClosedError, String(error));
        assert.match(error.message, /lost while RPC 'slow' was in flight; it may have run on the server/);
        assert.equal(error.code, 1001);
        return true;
      });
      const safe = c.callWith("slow", { args: [0.3], timeout: 60_000, idempotent: true });
      assert.equal(await c.call("add", 1, 1), 2); // the slow calls have reached the server
      const dropped = nextEvent(c, "disconnect");
      await control.call("restart", { served_id: server.id, down: 0.5 }); // 1001, back 0.5 s later
      assert.deepEqual(await dropped, [1001, "Server is shutting down."]);
      await plainFails;
      assert.equal(c.reconnecting, true);
      assert.notEqual(c.state, "connected");
      assert.throws(() => c.send("not buffered"), ConnectionClosedError);
      const waiting = c.call("add", 20, 22); // waits for the reconnect
      assert.equal(await waiting, 42);
      assert.equal(await safe, "done"); // re-sent to the new server
      assert.equal(c.state, "connected");
      assert.equal(c.reconnecting, false);
      assert.deepEqual(events, [["disconnect", 1001], ["reconnect", false]]);
      assert.deepEqual(states.slice(0, 2), ["connecting", "connected"]);
      assert.equal(states.at(-1), "connected");
      assert.ok(states.includes("disconnected"));
      const state = await control.call("server_state", { served_id: server.id });
      assert.equal(state.connects, 1); // the new server's first connection: this client's
    } finally {
      await c.close();
    }
  });

  test("a link dropped without a close frame (1006) reconnects", async () => {
    const server = await control.start({ proxy: true });
    const c = await client(server.url).connect();
    try {
      const events = [nextEvent(c, "disconnect"), nextEvent(c, "reconnect")];
      assert.equal(await control.call("drop", { served_id: server.id }), 1);
      assert.deepEqual(await events[0], [1006, ""]);
      assert.deepEqual(await events[1], [false]);
      assert.equal(await c.call("whoami"), "user-2"); // a new connection, a new session
    } finally {
      await c.close();
    }
  });

  test("close codes the server means end the client; others reconnect", async () => {
    const server = await control.start();
    for (const code of [4401, 4403, 1000, 1008, 4001]) {
      const c = await client(server.url).connect();
      const dropped = nextEvent(c, "disconnect");
      assert.equal(await c.call("close_me", code), "closing");
      assert.equal((await dropped)[0], code);
      assert.equal(c.state, "closed");
      assert.equal(c.reconnecting, false);
      assert.equal(c.closeCode, code);
      await assert.rejects(c.call("add", 1, 2), (/** @type {any} */ error) => error instanceof ConnectionClosedError && error.code === code);
      await c.close();
    }
    for (const code of [1011, 1013, 4008, 4000]) {
      const c = await client(server.url).connect();
      const back = nextEvent(c, "reconnect");
      await c.call("close_me", code);
      assert.deepEqual(await back, [false]);
      assert.equal(await c.call("add", 1, 2), 3);
      await c.close();
    }
    const custom = await client(server.url, { noReconnectCodes: [4000] }).connect();
    const dropped = nextEvent(custom, "disconnect");
    await custom.call("close_me", 4000);
    assert.equal((await dropped)[0], 4000);
    await sleep(300);
    assert.equal(custom.state, "closed");
    await custom.close();
  });

  test("without retry a drop ends the client", async () => {
    const server = await control.start({ proxy: true });
    const c = await client(server.url, { retry: false }).connect();
    const pendingFails = assert.rejects(c.call("slow", 10), (/** @type {any} */ error) => error instanceof ConnectionClosedError && error.code === 1006);
    await sleep(50);
    await control.call("drop", { served_id: server.id });
    await pendingFails;
    assert.equal(c.state, "closed");
    await assert.rejects(c.call("add", 1, 1), ConnectionClosedError);
    // connect() again is allowed
    await c.connect();
    assert.equal(await c.call("add", 1, 1), 2);
    await c.close();
  });

  test("a server that does not come back: the client gives up after maxRetryAttempt attempts", async () => {
    const server = await control.start();
    const c = await client(server.url, { maxRetryAttempt: 3, retryInterval: 20, maxRetryInterval: 40 }).connect();
    const gaveUp = nextEvent(c, "reconnectFailed");
    const waiting = c.callWith("add", { args: [1, 2], timeout: null });
    const safeFails = assert.rejects(c.callWith("slow", { args: [10], idempotent: true, timeout: 60_000 }), ConnectionFailedError);
    await sleep(50);
    await control.call("stop", { served_id: server.id });
    const [error] = await gaveUp;
    assert.ok(error instanceof ConnectionFailedError);
    assert.match(error.message, /All connection attempts failed after multiple retries\. \(3 reconnect attempts/);
    await safeFails;
    assert.equal(await waiting, 3); // it had been answered before the stop
    assert.equal(c.state, "closed");
    assert.equal(c.reconnecting, false);
    await assert.rejects(c.call("add", 1, 1), ConnectionClosedError);
    await c.close();
  });

  test("a call waiting for the reconnect times out; close() during the outage stops reconnecting", async () => {
    const server = await control.start();
    const c = await client(server.url, { retryInterval: 300, maxRetryInterval: 300 }).connect();
    await control.call("restart", { served_id: server.id, down: 5 });
    await waitFor(() => c.reconnecting);
    await assert.rejects(c.callWith("add", { args: [1, 2], timeout: 100 }), TimeoutError);
    const waitingFails = assert.rejects(c.call("add", 1, 2), ConnectionClosedError);
    await c.close();
    await waitingFails;
    assert.equal(c.state, "closed");
    assert.equal(c.reconnecting, false);
    await sleep(400);
    assert.equal(c.state, "closed"); // no attempt after close()
  });
});
