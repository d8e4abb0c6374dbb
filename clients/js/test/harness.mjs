// What the Node tests share: the WebSocket implementation, the control server that
// tests/test_js_client.py runs (it starts, restarts and cuts the servers under test), waits.
//
// Run them through pytest: `pytest tests/test_js_client.py` (it sets WEBSHOCKET_CONTROL_URL).
import assert from "node:assert/strict";
import { after, before } from "node:test";
import WS from "ws";

import { WebshocketClient } from "../src/index.js";

export const CONTROL_URL = process.env.WEBSHOCKET_CONTROL_URL;

/** `skip` of the suites that need our server: they run from pytest, which sets WEBSHOCKET_CONTROL_URL. */
export const needsServer = CONTROL_URL ? false : "needs our Python server: run `pytest tests/test_js_client.py` from the repository root";

/** The `ws` package, or Node's own WebSocket with WEBSHOCKET_JS_WEBSOCKET=global. */
export const WebSocket = process.env.WEBSHOCKET_JS_WEBSOCKET === "global" ? globalThis.WebSocket : WS;

/** Fast retries, and enough of them to outlast a server restart. */
export const FAST = Object.freeze({ retryInterval: 50, maxRetryInterval: 200, maxRetryAttempt: 60 });

/**
 * A client of a server under test (not connected yet).
 *
 * @param {string} url
 * @param {import("../src/index.js").ClientOptions} [options]
 */
export function client(url, options = {}) {
  return new WebshocketClient(url, { WebSocket, ...FAST, ...options });
}

/**
 * The control client, connected before the file's tests and closed after them. Its `start()`
 * gives a server of the file's own.
 */
export function useControl() {
  /** @type {{client: WebshocketClient | null}} */
  const control = { client: null };
  before(async () => {
    assert.ok(CONTROL_URL, "WEBSHOCKET_CONTROL_URL is not set: run these tests with `pytest tests/test_js_client.py`");
    control.client = await new WebshocketClient(CONTROL_URL, { WebSocket, session: false, retry: false }).connect();
  });
  after(async () => {
    await control.client?.close();
  });
  return {
    /**
     * Start a server under test: `{id, url (through the proxy if any), direct, port}`.
     *
     * @param {{kind?: "app" | "auth", recovery?: boolean | object, proxy?: boolean}} [options]
     * @returns {Promise<{id: string, url: string, direct: string, port: number}>}
     */
    start: (options = {}) => call("start", options),
    /**
     * @param {string} method
     * @param {object} kwargs
     */
    call,
  };

  /**
   * @param {string} method
   * @param {object} kwargs
   */
  function call(method, kwargs = {}) {
    assert.ok(control.client, "the control client is not connected");
    return control.client.callWith(method, { kwargs, timeout: 30_000 });
  }
}

/**
 * Resolve once `predicate()` is true (poll), reject after `timeout` ms.
 *
 * @param {() => boolean | Promise<boolean>} predicate
 * @param {number} [timeout]
 * @param {string} [what]
 */
export async function waitFor(predicate, timeout = 10_000, what = "condition") {
  const deadline = Date.now() + timeout;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeout} ms`);
    await sleep(10);
  }
}

/**
 * The arguments of the next `event` of `emitter` (a client), within `timeout` ms.
 *
 * @param {WebshocketClient} emitter
 * @param {string} event
 * @param {number} [timeout]
 * @returns {Promise<any[]>}
 */
export function nextEvent(emitter, event, timeout = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no "${event}" event within ${timeout} ms`));
    }, timeout);
    const stop = emitter.on(/** @type {any} */ (event), (/** @type {any[]} */ ...args) => {
      clearTimeout(timer);
      stop();
      resolve(args);
    });
  });
}

/** @param {number} ms */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
