/**
 * The Webshocket client: RPC, streaming RPC, pushed packets, reconnect with backoff, sessions.
 *
 * @module
 */

import { backoffDelay } from "./backoff.js";
import { jsonCodec, loadMsgpackCodec, messageBytes } from "./codec.js";
import { Emitter } from "./emitter.js";
import { ConnectionClosedError, ConnectionFailedError, RPCError, TimeoutError } from "./errors.js";
import { Positions } from "./positions.js";
import { RpcStream } from "./stream.js";

/** Packet sources of the wire protocol. */
export const Source = Object.freeze({ BROADCAST: 1, CHANNEL: 2, UNKNOWN: 3, CUSTOM: 4, RPC: 5, SESSION: 6 });

/**
 * Close codes after which the client does not reconnect: the server (or the client) meant it.
 * 1000 normal, 1008 policy violation, the protocol errors 1002/1003/1007/1009/1010 (the same
 * client would repeat them), 4001/4003/4401/4403 unauthorized/forbidden, 4009 another
 * connection resumed this client's session. The same set as the Python client's.
 */
export const NO_RECONNECT_CLOSE_CODES = Object.freeze([1000, 1002, 1003, 1007, 1008, 1009, 1010, 4001, 4003, 4009, 4401, 4403]);

const DEFAULTS = Object.freeze({
  protocols: /** @type {string[]} */ ([]),
  token: /** @type {null | string | (() => string | null | Promise<string | null>)} */ (null),
  tokenIn: /** @type {"subprotocol" | "query"} */ ("subprotocol"),
  tokenParam: "token",
  session: true,
  resume: /** @type {null | {token?: string | null, positions?: Record<string, [string, number]>}} */ (null),
  maxPositions: 1000,
  codec: /** @type {"json" | "msgpack" | import("./codec.js").Codec} */ ("json"),
  timeout: /** @type {number | null} */ (30_000),
  connectTimeout: 10_000,
  retry: true,
  maxRetryAttempt: 5,
  retryInterval: 500,
  maxRetryInterval: 30_000,
  noReconnectCodes: /** @type {Iterable<number>} */ (NO_RECONNECT_CLOSE_CODES),
});

const now = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/**
 * @typedef {object} Deferred
 * @property {Promise<void>} promise
 * @property {() => void} resolve
 */

/** @returns {Deferred} */
function deferred() {
  /** @type {() => void} */
  let resolve = () => {};
  const promise = new Promise((r) => (resolve = () => r(undefined)));
  return { promise, resolve };
}

/**
 * One WebSocket connection (attempt) and what arrives on it, in order.
 *
 * @typedef {object} Link
 * @property {any} ws the WebSocket
 * @property {boolean} ready open (and its session answered): its packets go to the application
 * @property {Promise<void>} chain messages waiting for an asynchronous decode (Blobs), in order
 * @property {number} backlog how many are waiting on `chain`
 * @property {((data: any) => void) | null} hello waits for the session answer
 */

/**
 * @typedef {object} Pending
 * @property {(reply: any) => void} settle the reply (null: lost in flight, a reconnect is coming)
 * @property {(error: Error) => void} fail
 */

/**
 * A client of a Webshocket server, in the JSON dialect (or msgpack, optionally).
 *
 * ```js
 * const client = new WebshocketClient("ws://localhost:5000");
 * await client.connect();
 * console.log(await client.call("add", 10, 20)); // 30
 * ```
 */
export class WebshocketClient {
  /**
   * @param {string | URL} url `ws://` or `wss://` address of the server
   * @param {import("./index.js").ClientOptions} [options]
   */
  constructor(url, options = {}) {
    const parsed = new URL(String(url));
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new TypeError(`Invalid WebSocket URL ${String(url)}: expected ws://host[:port][/path] or wss://...`);
    }
    /** The server's address, as given. */
    this.url = String(url);
    const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)); // undefined: the default
    /** @type {typeof DEFAULTS} */
    const opts = { ...DEFAULTS, ...given };
    /** @type {any} */
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new TypeError(
        "No WebSocket implementation: pass options.WebSocket (e.g. `import WebSocket from \"ws\"`), " +
          "or run Node >= 22 (Node 20: --experimental-websocket)",
      );
    }
    this.options = opts;
    /** Close codes after which the client does not reconnect (assign a Set to change it). */
    this.noReconnectCodes = new Set(opts.noReconnectCodes);
    /** @type {import("./index.js").ConnectionState} */
    this.state = "disconnected";
    /**
     * Outcome of the last session set-up: true, the server gave the session back (state,
     * subscriptions, missed channel messages); false, a new session; null, no session
     * (not asked for, or the server has no recovery).
     * @type {boolean | null}
     */
    this.recovered = null;
    /** The close code of the last connection (1006: it ended without a close frame); null while connected, and before. @type {number | null} */
    this.closeCode = null;
    /** The subprotocol the server chose on the current (or last) connection ("" for none). */
    this.protocol = "";
    this._events = new Emitter();
    /** @type {import("./codec.js").Codec | null} */
    this._codec = typeof opts.codec === "object" ? opts.codec : opts.codec === "json" ? jsonCodec : null;
    if (this._codec === null && opts.codec !== "msgpack") throw new TypeError(`Unknown codec ${String(opts.codec)}: "json", "msgpack" or a Codec`);
    /** @type {Link | null} */
    this._link = null; // the connection in use
    /** @type {Link | null} */
    this._attempt = null; // a connection being opened
    /** @type {Map<string, Pending>} */
    this._pending = new Map();
    /** @type {Map<string, RpcStream>} */
    this._streams = new Map();
    /** @type {Deferred | null} */
    this._outage = null; // while connecting or reconnecting: resolved when that ends
    this._reconnecting = false;
    this._retrying = false; // reconnect after a drop (connect() succeeded with retry on)
    /** @type {Error | null} */
    this._gaveUp = null;
    this._generation = 0; // bumped by close() and connect(): older reconnect loops stop
    /** @type {Promise<WebshocketClient> | null} */
    this._connecting = null;
    /** @type {(() => void) | null} */
    this._cancelSleep = null;
    this._sessionToken = opts.resume?.token ?? null;
    this._positions = new Positions(opts.maxPositions, opts.resume?.positions);
    this._idPrefix = `js${Math.random().toString(36).slice(2, 10)}-`;
    this._lastId = 0;
  }

  // ------------------------------------------------------------------ state

  /** True while connected. */
  get connected() {
    return this.state === "connected";
  }

  /** True from a drop until the automatic reconnect succeeds or gives up. */
  get reconnecting() {
    return this._reconnecting;
  }

  /**
   * The session to resume later, e.g. after a page reload (`new WebshocketClient(url, {resume})`):
   * the server's last token (null: none yet) and the last position seen per channel.
   *
   * @returns {{token: string | null, positions: Record<string, [string, number]>}}
   */
  get session() {
    return { token: this._sessionToken, positions: this._positions.toJSON() };
  }

  /**
   * @param {import("./index.js").ConnectionState} state
   */
  _setState(state) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this._emit("state", state, previous);
  }

  // ------------------------------------------------------------------ events

  /**
   * Listen to an event; returns a function that stops listening.
   *
   * - `"channel"` `(data, packet)`: a message published on a channel this connection subscribed
   *   to (`packet.channel` names it); `onChannel(name, ...)` for one channel.
   * - `"broadcast"` `(data, packet)`; `"message"` `(data, packet)`: the server's
   *   `connection.send(data)` (and any other pushed packet); `"packet"` `(packet)`: every pushed packet.
   * - `"disconnect"` `(code, reason)`: the connection was lost (not after `close()`), with a reconnect
   *   coming or not; `"reconnect"` `(recovered)`: back after an automatic reconnect;
   *   `"reconnectFailed"` `(error)`: the client gave up reconnecting.
   * - `"state"` `(state, previous)`; `"error"` `(error)`: a listener threw, or a message could not be decoded.
   *
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    return this._events.on(event, listener);
  }

  /**
   * Stop a listener added with {@link on}.
   *
   * @param {string} event
   * @param {(...args: any[]) => void} listener
   */
  off(event, listener) {
    this._events.off(event, listener);
  }

  /**
   * Listen to the messages of one channel (the exact name the server published to). The server
   * decides what a connection subscribes to (usually in an RPC method); this only filters.
   *
   * @param {string} channel
   * @param {(data: any, packet: any) => void} listener
   * @returns {() => void}
   */
  onChannel(channel, listener) {
    return this._events.on(`channel:${channel}`, listener);
  }

  /**
   * @param {string} event
   * @param {...unknown} args
   */
  _emit(event, ...args) {
    this._events.emit(event, args, (error, name) => this._report(error, `a "${name}" listener threw`));
  }

  /**
   * @param {unknown} error
   * @param {string} what
   */
  _report(error, what) {
    if (this._events.has("error")) {
      this._events.emit("error", [error], (e) => console.error("webshocket-client: an \"error\" listener threw", e));
    } else {
      console.error(`webshocket-client: ${what}:`, error);
    }
  }

  // ------------------------------------------------------------------ connecting

  /**
   * Connect. With `retry` (the default), a failed attempt is retried up to `maxRetryAttempt`
   * times with backoff, and once connected the client reconnects by itself after a drop.
   * With `session` (the default) and a server with recovery, it resolves once the server has
   * answered the session hello (see {@link recovered}).
   *
   * @returns {Promise<this>}
   * @throws {ConnectionFailedError} every attempt failed
   */
  async connect() {
    if (this.state === "connected") return this;
    if (this._connecting) return /** @type {Promise<this>} */ (this._connecting);
    if (this._reconnecting && this._outage) {
      await this._outage.promise;
      if (this.connected) return this;
      throw this._gaveUp ?? new ConnectionClosedError("The client was closed while it reconnected.");
    }
    this._connecting = this._connectWithRetry().finally(() => (this._connecting = null));
    return /** @type {Promise<this>} */ (this._connecting);
  }

  /** @returns {Promise<this>} */
  async _connectWithRetry() {
    const generation = ++this._generation;
    this._retrying = false;
    this._gaveUp = null;
    this._outage ??= deferred();
    const attempts = this.options.retry ? Math.max(1, this.options.maxRetryAttempt) : 1;
    /** @type {any} */
    let last = null;
    try {
      for (let attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0) await this._sleep(backoffDelay(attempt - 1, this.options.retryInterval, this.options.maxRetryInterval));
        if (generation !== this._generation) throw new ConnectionClosedError("connect() was cancelled by close().");
        try {
          await this._open(generation, false);
          this._retrying = this.options.retry;
          return this;
        } catch (error) {
          last = error;
          if (generation !== this._generation || error instanceof TypeError) break;
        }
      }
      if (generation !== this._generation) throw new ConnectionClosedError("connect() was cancelled by close().");
      this._setState("disconnected");
      if (last instanceof ConnectionClosedError || last instanceof TypeError) throw last;
      throw new ConnectionFailedError(
        attempts > 1
          ? `All connection attempts failed after multiple retries. (${attempts} attempts to ${this.url}; last: ${last?.message})`
          : String(last?.message ?? last),
        { cause: last },
      );
    } finally {
      if (generation === this._generation) this._endOutage();
    }
  }

  /** @returns {Promise<import("./codec.js").Codec>} */
  async _codecReady() {
    if (this._codec === null) this._codec = await loadMsgpackCodec();
    return this._codec;
  }

  /** @returns {Promise<string | null>} */
  async _token() {
    const token = this.options.token;
    const value = typeof token === "function" ? await token() : token;
    return value == null || value === "" ? null : String(value);
  }

  /**
   * The URL and subprotocols of one attempt.
   *
   * @param {import("./codec.js").Codec} codec
   * @param {string | null} token
   * @returns {{url: string, protocols: string[]}}
   */
  _handshake(codec, token) {
    const url = new URL(this.url);
    const protocols = [];
    if (this.options.session) protocols.push(codec.sessionSubprotocol, codec.subprotocol);
    else if (codec.required) protocols.push(codec.subprotocol);
    protocols.push(...this.options.protocols);
    if (token !== null) {
      if (this.options.tokenIn === "query") {
        url.searchParams.set(this.options.tokenParam, token);
      } else {
        // never the only entry: browsers fail a handshake whose answer names none they offered
        if (protocols.length === 0) protocols.push(codec.subprotocol);
        protocols.push(`bearer.${token}`);
      }
    }
    return { url: url.href, protocols };
  }

  /**
   * One connection attempt: open, then the session hello. Resolves once the connection is in
   * use (its first packets already go to the application).
   *
   * @param {number} generation
   * @param {boolean} isReconnect
   * @returns {Promise<void>}
   */
  async _open(generation, isReconnect) {
    this._setState("connecting");
    const codec = await this._codecReady();
    const { url, protocols } = this._handshake(codec, await this._token());
    if (generation !== this._generation) throw new ConnectionClosedError("connect() was cancelled by close().");
    const ws = protocols.length ? new this.WebSocket(url, protocols) : new this.WebSocket(url);
    try {
      ws.binaryType = "arraybuffer";
    } catch {
      // Blobs then; messageBytes() reads them
    }
    /** @type {Link} */
    const link = { ws, ready: false, chain: Promise.resolve(), backlog: 0, hello: null };
    this._attempt = link;
    const where = `Could not connect to ${this.url}`;
    await new Promise((resolve, reject) => {
      let settled = false;
      /** @type {string | null} */
      let why = null;
      /** @param {Error} error */
      const fail = (error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        link.hello = null;
        if (this._attempt === link) this._attempt = null;
        if (ws.readyState === 0 || ws.readyState === 1) ws.close();
        reject(error);
      };
      /** @param {boolean | null} recovered */
      const up = (recovered) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this._attempt === link) this._attempt = null;
        this._up(link, recovered, isReconnect);
        resolve(undefined);
      };
      const timer = setTimeout(() => fail(new ConnectionFailedError(`${where}: no answer within ${this.options.connectTimeout} ms`)), this.options.connectTimeout);
      ws.onerror = (/** @type {any} */ event) => {
        why = event?.message || event?.error?.message || why; // the ws package says why (e.g. "Unexpected server response: 401")
        // a close event usually follows (with its code); Node 20's built-in WebSocket sends none
        if (!settled) setTimeout(() => fail(new ConnectionFailedError(`${where}: ${why ?? "the connection failed"}`)), 0);
      };
      ws.onopen = () => {
        if (generation !== this._generation) {
          fail(new ConnectionClosedError("connect() was cancelled by close()."));
          return;
        }
        this.protocol = ws.protocol ?? "";
        if (this.protocol !== codec.sessionSubprotocol) {
          if (codec.required && this.protocol !== codec.subprotocol) {
            fail(new ConnectionFailedError(`${where}: the server did not accept the ${codec.name} dialect (${codec.subprotocol})`));
            return;
          }
          up(null);
          return;
        }
        link.hello = (/** @type {any} */ answer) => {
          link.hello = null;
          if (answer === null || typeof answer !== "object" || typeof answer.token !== "string") {
            fail(new ConnectionFailedError(`${where}: a malformed answer to the session hello`));
            return;
          }
          this._sessionToken = answer.token;
          up(answer.recovered === true);
        };
        const hello = { token: this._sessionToken, positions: this._positions.toJSON() };
        ws.send(codec.encode({ source: Source.SESSION, data: hello }));
      };
      ws.onmessage = (/** @type {any} */ event) => this._receive(link, event.data);
      ws.onclose = (/** @type {any} */ event) => {
        if (!settled) {
          const detail = why ? `: ${why}` : event.code === 1006 ? " (refused, or the server is not reachable)" : "";
          fail(new ConnectionFailedError(`${where}: closed with code ${event.code} before it was ready${detail}`));
          return;
        }
        this._after(link, () => this._closed(link, event.code, event.reason ?? ""));
      };
    });
  }

  /**
   * The connection is ready: use it, and tell who waits. Runs before its next packet is handled.
   *
   * @param {Link} link
   * @param {boolean | null} recovered
   * @param {boolean} isReconnect
   */
  _up(link, recovered, isReconnect) {
    link.ready = true;
    this._link = link;
    this.recovered = recovered;
    this.closeCode = null;
    this._reconnecting = false;
    this._gaveUp = null;
    this._setState("connected");
    if (isReconnect) this._emit("reconnect", recovered === true);
    this._endOutage();
  }

  _endOutage() {
    const outage = this._outage;
    this._outage = null;
    outage?.resolve();
  }

  /**
   * Wait `ms` (close() cuts it short).
   *
   * @param {number} ms
   * @returns {Promise<void>}
   */
  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._cancelSleep = null;
        resolve(undefined);
      }, ms);
      this._cancelSleep = () => {
        clearTimeout(timer);
        this._cancelSleep = null;
        resolve(undefined);
      };
    });
  }

  // ------------------------------------------------------------------ dropped, reconnecting

  /**
   * The connection of `link` closed.
   *
   * @param {Link} link
   * @param {number} code
   * @param {string} reason
   */
  _closed(link, code, reason) {
    if (link !== this._link) return;
    this._link = null;
    this.closeCode = code;
    if (this.state === "closed") return; // our own close()
    const reconnect = this._retrying && !this.noReconnectCodes.has(code);
    const lost = new ConnectionClosedError(`Connection to ${this.url} closed (code ${code}) during the stream.`, code);
    for (const stream of [...this._streams.values()]) stream._fail(lost);
    this._streams.clear();
    const pending = [...this._pending.values()];
    this._pending.clear();
    if (reconnect) {
      this._reconnecting = true;
      this._outage ??= deferred();
      this._setState("disconnected");
      for (const call of pending) call.settle(null); // lost in flight: the call decides (idempotent or not)
      this._emit("disconnect", code, reason);
      void this._reconnect(this._generation);
    } else {
      this._retrying = false;
      this._setState("closed");
      const error = new ConnectionClosedError(
        `Connection to ${this.url} closed (code ${code}); a call in flight may have run on the server.`,
        code,
      );
      for (const call of pending) call.fail(error);
      this._emit("disconnect", code, reason);
      this._endOutage();
    }
  }

  /**
   * Reconnect after a drop: up to `maxRetryAttempt` attempts, then close for good.
   *
   * @param {number} generation
   */
  async _reconnect(generation) {
    const { maxRetryAttempt, retryInterval, maxRetryInterval } = this.options;
    const attempts = Math.max(1, maxRetryAttempt);
    /** @type {any} */
    let last = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      await this._sleep(backoffDelay(attempt, retryInterval, maxRetryInterval));
      if (generation !== this._generation) return;
      try {
        await this._open(generation, true);
        return;
      } catch (error) {
        if (generation !== this._generation) return;
        last = error;
        this._setState("disconnected");
      }
    }
    this._reconnecting = false;
    this._retrying = false;
    this._gaveUp = new ConnectionFailedError(
      `All connection attempts failed after multiple retries. (${attempts} reconnect attempts to ${this.url}; last: ${last?.message})`,
      { cause: last },
    );
    this._setState("closed");
    this._emit("reconnectFailed", this._gaveUp);
    this._endOutage();
  }

  /** @returns {Link | null} the connection, if connected */
  _live() {
    const link = this._link;
    return link !== null && this.state === "connected" && link.ws.readyState === 1 ? link : null;
  }

  /**
   * The connection; while (re)connecting, wait for it until `deadline`.
   *
   * @param {string} what
   * @param {number | null} deadline `now()` time
   * @param {AbortSignal | undefined} signal
   * @param {() => Error} onTimeout
   * @returns {Promise<Link>}
   */
  async _waitLive(what, deadline, signal, onTimeout) {
    let waited = false;
    for (;;) {
      signal?.throwIfAborted();
      const live = this._live();
      if (live !== null) return live;
      const outage = this._outage;
      if (outage === null) {
        if (waited && this._gaveUp !== null) throw this._gaveUp;
        throw new ConnectionClosedError(`Cannot ${what}: the client is not connected.`, this.closeCode);
      }
      const remaining = deadline === null ? null : deadline - now();
      if (remaining !== null && remaining <= 0) throw onTimeout();
      await new Promise((resolve, reject) => {
        /** @type {any} */
        let timer;
        const onAbort = () => {
          clearTimeout(timer);
          reject(signal?.reason);
        };
        if (remaining !== null) {
          timer = setTimeout(() => {
            signal?.removeEventListener("abort", onAbort);
            reject(onTimeout());
          }, remaining);
        }
        signal?.addEventListener("abort", onAbort, { once: true });
        outage.promise.then(() => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          resolve(undefined);
        });
      });
      waited = true;
    }
  }

  // ------------------------------------------------------------------ incoming

  /**
   * Run `task` after the messages of `link` that are still being decoded.
   *
   * @param {Link} link
   * @param {() => void} task
   */
  _after(link, task) {
    if (link.backlog === 0) task();
    else link.chain = link.chain.then(task);
  }

  /**
   * @param {Link} link
   * @param {unknown} data
   */
  _receive(link, data) {
    let bytes;
    try {
      bytes = messageBytes(data);
    } catch (error) {
      this._report(error, "a message could not be read");
      return;
    }
    if (!(bytes instanceof Promise) && link.backlog === 0) {
      this._handle(link, bytes);
      return;
    }
    link.backlog++; // a Blob: decoded asynchronously, handled in order
    const pending = bytes;
    link.chain = link.chain
      .then(() => pending)
      .then(
        (b) => this._handle(link, b),
        (error) => this._report(error, "a message could not be read"),
      )
      .finally(() => link.backlog--);
  }

  /**
   * One packet from the server.
   *
   * @param {Link} link
   * @param {string | Uint8Array} message
   */
  _handle(link, message) {
    /** @type {any} */
    let packet;
    try {
      packet = /** @type {import("./codec.js").Codec} */ (this._codec).decode(message);
    } catch (error) {
      this._report(error, "a message could not be decoded");
      return;
    }
    if (packet === null || typeof packet !== "object") return;
    const source = packet.source;
    if (source === Source.SESSION) {
      link.hello?.(packet.data ?? null);
      return;
    }
    if (!link.ready) return;
    if (source === Source.RPC) {
      const rpc = packet.rpc;
      if (rpc === null || typeof rpc !== "object" || rpc.type !== "response") return;
      const stream = this._streams.get(rpc.call_id);
      if (stream !== undefined) {
        stream._push(rpc);
        return;
      }
      this._pending.get(rpc.call_id)?.settle(rpc);
      return;
    }
    if (source === Source.CHANNEL) {
      if (packet.offset != null && !this._positions.accept(packet)) return; // a resume sent it again
      this._emit("packet", packet);
      this._emit("channel", packet.data, packet);
      if (typeof packet.channel === "string") this._emit(`channel:${packet.channel}`, packet.data, packet);
      return;
    }
    this._emit("packet", packet);
    this._emit(source === Source.BROADCAST ? "broadcast" : "message", packet.data, packet);
  }

  // ------------------------------------------------------------------ outgoing

  _nextId() {
    return `${this._idPrefix}${++this._lastId}`;
  }

  /**
   * @param {Link} link
   * @param {object} packet
   */
  _write(link, packet) {
    link.ws.send(/** @type {import("./codec.js").Codec} */ (this._codec).encode(packet));
  }

  /**
   * Send `data` as a custom packet (`{"source": 4, "data": data}`), for the handler's `on_receive`.
   *
   * @param {unknown} data
   * @throws {ConnectionClosedError} not connected (also while reconnecting: nothing is buffered)
   */
  send(data) {
    const link = this._live();
    if (link === null) throw new ConnectionClosedError("Cannot send data: the client is not connected.", this.closeCode);
    this._write(link, { source: Source.CUSTOM, data });
  }

  /**
   * Call `method(...args)` on the server; resolves with its result. Uses the client's `timeout`.
   * For keyword arguments, a timeout of its own, `idempotent` or an abort signal: {@link callWith}.
   *
   * @param {string} method
   * @param {...unknown} args
   * @returns {Promise<any>}
   * @throws {RPCError} the server answered with an error (`code`, `codeName`, message)
   * @throws {TimeoutError} no reply within the timeout
   * @throws {ConnectionClosedError} not connected, or the link dropped while the call was in flight
   * @throws {ConnectionFailedError} the client gave up reconnecting while the call waited
   */
  call(method, ...args) {
    return this.callWith(method, { args });
  }

  /**
   * Call `method` with options:
   *
   * - `args` (list), `kwargs` (object, the method's keyword arguments);
   * - `timeout`: ms for the reply, including any wait for a reconnect (default: the client's;
   *   null waits for ever);
   * - `idempotent`: the call is safe to repeat, so if the link drops before the reply it is sent
   *   again after the reconnect (at most `maxRetryAttempt` times) instead of failing;
   * - `signal`: an AbortSignal; aborting rejects with its reason (the server may still run it).
   *
   * @param {string} method
   * @param {import("./index.js").CallOptions} [options]
   * @returns {Promise<any>}
   */
  async callWith(method, options = {}) {
    const { args = [], kwargs = {}, idempotent = false, signal } = options;
    const timeout = options.timeout === undefined ? this.options.timeout : options.timeout;
    const deadline = timeout === null || timeout === undefined ? null : now() + timeout;
    const callId = this._nextId();
    const onTimeout = () => new TimeoutError(`RPC '${method}' got no response within ${timeout} ms.`);
    let resent = 0;
    for (;;) {
      const link = this._live() ?? (await this._waitLive(`call '${method}'`, deadline, signal, onTimeout));
      const request = { type: "request", method, args, kwargs, call_id: callId };
      const reply = await this._exchange(link, { source: Source.RPC, rpc: request }, callId, deadline, signal, onTimeout);
      if (reply !== null) {
        if (reply.error === null || reply.error === undefined) return reply.response;
        throw new RPCError(method, reply.error, reply.response);
      }
      if (!idempotent || !this._retrying || resent >= this.options.maxRetryAttempt) {
        throw new ConnectionClosedError(
          `Connection to ${this.url} lost while RPC '${method}' was in flight; it may have run on the server ` +
            "(pass idempotent: true to re-send calls that are safe to repeat).",
          this.closeCode,
        );
      }
      resent++;
    }
  }

  /**
   * Send a request and wait for its reply (null: the link dropped and a reconnect is coming).
   *
   * @param {Link} link
   * @param {object} packet
   * @param {string} callId
   * @param {number | null} deadline
   * @param {AbortSignal | undefined} signal
   * @param {() => Error} onTimeout
   * @returns {Promise<any>}
   */
  _exchange(link, packet, callId, deadline, signal, onTimeout) {
    return new Promise((resolve, reject) => {
      /** @type {any} */
      let timer;
      const done = () => {
        this._pending.delete(callId);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(signal?.reason);
      };
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      this._pending.set(callId, {
        settle: (reply) => {
          done();
          resolve(reply);
        },
        fail: (error) => {
          done();
          reject(error);
        },
      });
      if (deadline !== null) {
        timer = setTimeout(() => {
          done();
          reject(onTimeout());
        }, Math.max(0, deadline - now()));
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this._write(link, packet);
      } catch (error) {
        done();
        reject(error);
      }
    });
  }

  /**
   * Call a streaming method (an async generator on the server) and iterate over its chunks:
   *
   * ```js
   * for await (const chunk of client.stream("ticks", 10)) console.log(chunk);
   * ```
   *
   * Leaving the loop early (or `stream.abort()`) sends `__abort__`: the server cancels the
   * generator. Errors surface as typed errors from the loop.
   *
   * @param {string} method
   * @param {...unknown} args
   * @returns {RpcStream}
   */
  stream(method, ...args) {
    return this.streamWith(method, { args });
  }

  /**
   * A stream with options: `args`, `kwargs`, `signal` (an AbortSignal: aborting cancels the
   * stream on the server and the loop throws the signal's reason), `timeout` (ms to wait for the
   * connection while reconnecting; the stream itself is not limited: use
   * `signal: AbortSignal.timeout(ms)` for that).
   *
   * @param {string} method
   * @param {import("./index.js").StreamOptions} [options]
   * @returns {RpcStream}
   */
  streamWith(method, options = {}) {
    const timeout = options.timeout === undefined ? this.options.timeout : options.timeout;
    return new RpcStream(this, method, options.args ?? [], options.kwargs ?? {}, timeout ?? null, options.signal);
  }

  /**
   * Start a stream (for RpcStream): wait for the connection, register, send the request.
   *
   * @param {RpcStream} stream
   * @param {number | null} timeout
   * @returns {Promise<Link | null>}
   */
  async _startStream(stream, timeout) {
    const deadline = timeout === null ? null : now() + timeout;
    const onTimeout = () => new TimeoutError(`Stream '${stream.method}' could not start within ${timeout} ms: still reconnecting.`);
    const link = this._live() ?? (await this._waitLive(`stream '${stream.method}'`, deadline, stream.signal, onTimeout));
    if (stream._stopped) return null; // stopped while it waited for the connection: nothing to send
    this._streams.set(stream.callId, stream);
    const request = { type: "request", method: stream.method, args: stream.args, kwargs: stream.kwargs, call_id: stream.callId };
    this._write(link, { source: Source.RPC, rpc: request });
    return link;
  }

  /**
   * Stop a stream (for RpcStream): forget it and, if its connection is still up, ask the server
   * to cancel it (`__abort__`, which gets no reply).
   *
   * @param {RpcStream} stream
   * @param {Link | null} link the connection it was started on
   */
  _stopStream(stream, link) {
    this._streams.delete(stream.callId);
    if (link === null || link !== this._live()) return;
    const request = { type: "request", method: "__abort__", args: [stream.callId], kwargs: {}, call_id: this._nextId() };
    try {
      this._write(link, { source: Source.RPC, rpc: request });
    } catch {
      // closing: the server cancels it anyway
    }
  }

  // ------------------------------------------------------------------ closing

  /**
   * Close the connection (code 1000 by default; the server ends the session), stop any
   * reconnect, and resolve once it is down. Calls and streams in flight fail with
   * ConnectionClosedError. `connect()` may be called again afterwards.
   *
   * @param {number} [code]
   * @param {string} [reason]
   * @returns {Promise<void>}
   */
  async close(code = 1000, reason = "Client is closing the connection.") {
    this._generation++;
    this._retrying = false;
    this._reconnecting = false;
    this._cancelSleep?.();
    this._setState("closed");
    const links = [this._link, this._attempt].filter((link) => link !== null);
    this._link = null;
    this._attempt = null;
    const error = new ConnectionClosedError(`Connection to ${this.url} closed by the client.`, code);
    for (const stream of [...this._streams.values()]) stream._fail(error);
    this._streams.clear();
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const call of pending) call.fail(error);
    this._endOutage();
    await Promise.all(
      links.map(
        (link) =>
          new Promise((resolve) => {
            const ws = link.ws;
            if (ws.readyState === 3) {
              resolve(undefined);
              return;
            }
            const timer = setTimeout(resolve, 5000);
            ws.addEventListener?.("close", () => {
              clearTimeout(timer);
              resolve(undefined);
            });
            this.closeCode = code;
            try {
              ws.close(code, reason);
            } catch {
              ws.close();
            }
          }),
      ),
    );
  }
}
