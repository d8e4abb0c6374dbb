// Token authentication at the handshake (examples/auth.py's handler: a JWT in a `bearer.`
// subprotocol or the query string, HTTP 401 otherwise, close code 4401 at expiry).
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import { ConnectionClosedError, ConnectionFailedError } from "../src/index.js";
import { client, needsServer, nextEvent, sleep, useControl } from "./harness.mjs";

describe("token auth", { timeout: 60_000, skip: needsServer }, () => {
  const control = useControl();
  /** @type {{id: string, url: string}} */
  let server;
  const says401 = process.env.WEBSHOCKET_JS_WEBSOCKET !== "global"; // the ws package tells the HTTP status

  before(async () => {
    server = await control.start({ kind: "auth", recovery: true, proxy: true });
  });

  /**
   * @param {string} user
   * @param {number} lifetime seconds
   * @param {boolean} [forged]
   * @returns {Promise<string>}
   */
  const token = (user, lifetime, forged = false) => control.call("issue_token", { user, lifetime, forged });

  test("the token as a bearer subprotocol (the default): accepted, never echoed", async () => {
    const c = await client(server.url, { token: await token("alice", 60) }).connect();
    try {
      assert.equal(await c.call("whoami"), "alice");
      assert.equal(c.protocol, "webshocket.json+session"); // a session too, on this server
    } finally {
      await c.close();
    }
    const plain = await client(server.url, { token: await token("alice", 60), session: false }).connect();
    try {
      assert.equal(plain.protocol, "webshocket.json"); // the token is never the only entry
      assert.equal(await plain.call("whoami"), "alice");
    } finally {
      await plain.close();
    }
  });

  test("the token in the query string", async () => {
    const c = await client(server.url, { token: await token("bob", 60), tokenIn: "query" }).connect();
    try {
      assert.equal(await c.call("whoami"), "bob");
    } finally {
      await c.close();
    }
  });

  test("a missing, forged or expired token: the upgrade is refused (HTTP 401), connect() fails", async () => {
    for (const bad of [null, await token("eve", 60, true), await token("carol", -5)]) {
      const c = client(server.url, { token: bad, maxRetryAttempt: 2, retryInterval: 10 });
      await assert.rejects(c.connect(), (/** @type {any} */ error) => {
        assert.ok(error instanceof ConnectionFailedError, String(error));
        if (says401) assert.match(error.message, /401/);
        return true;
      });
      assert.equal(c.state, "disconnected");
    }
  });

  test("a token function is asked for a fresh token at each (re)connect", async () => {
    /** @type {string[]} */
    const issued = [];
    const c = client(server.url, {
      token: async () => {
        const fresh = await token("dave", 60);
        issued.push(fresh);
        return fresh;
      },
    });
    await c.connect();
    try {
      assert.equal(issued.length, 1);
      const back = nextEvent(c, "reconnect");
      await control.call("drop", { served_id: server.id });
      assert.deepEqual(await back, [true]); // resumed, with the new token accepted at the handshake
      assert.equal(issued.length, 2);
      assert.equal(await c.call("whoami"), "dave");
    } finally {
      await c.close();
    }
  });

  test("a token that expires while connected: the server closes with 4401, the client does not reconnect", async () => {
    const c = await client(server.url, { token: await token("erin", 1.5) }).connect();
    const dropped = nextEvent(c, "disconnect", 10_000);
    assert.equal(await c.call("whoami"), "erin");
    const [code] = await dropped;
    assert.equal(code, 4401);
    await sleep(300);
    assert.equal(c.state, "closed");
    await assert.rejects(c.call("whoami"), (/** @type {any} */ error) => error instanceof ConnectionClosedError && error.code === 4401);
    await c.close();
  });
});
