/**
 * A streaming RPC call as an async iterator.
 *
 * @module
 */

import { RPCError } from "./errors.js";

/**
 * @typedef {{value: unknown} | {error: unknown}} Item
 */

/**
 * The chunks of one streaming call, in order: `for await (const chunk of stream)`. Made by
 * `client.stream()` / `client.streamWith()`, which send the request at once.
 *
 * The loop ends when the server's generator ends; it throws an {@link RPCError} the server
 * answered (a method that does not exist, a generator that raised: code -32603, "Stream
 * aborted: ..."), a `ConnectionClosedError` if the link dropped mid-stream, or the abort
 * signal's reason. Leaving the loop early (`break`, `return()`) or `abort()` sends `__abort__`
 * and the server cancels the generator.
 *
 * @implements {AsyncIterableIterator<any>}
 */
export class RpcStream {
  /**
   * @param {import("./client.js").WebshocketClient} client
   * @param {string} method
   * @param {unknown[]} args
   * @param {Record<string, unknown>} kwargs
   * @param {number | null} timeout ms to wait for the connection while reconnecting
   * @param {AbortSignal} [signal]
   */
  constructor(client, method, args, kwargs, timeout, signal) {
    this.client = client;
    /** The streaming method called. */
    this.method = method;
    this.args = args;
    this.kwargs = kwargs;
    this.signal = signal;
    /** The call id of the request (what `__abort__` names). */
    this.callId = client._nextId();
    /** @type {Item[]} */
    this._items = [];
    /** @type {{resolve: (result: IteratorResult<any>) => void, reject: (error: unknown) => void}[]} */
    this._waiters = [];
    this._finished = false; // the server is done with it (end, error) or the link is gone
    this._stopped = false; // the consumer stopped it (return, abort)
    /** @type {import("./client.js").Link | null} */
    this._link = null;
    if (signal?.aborted) {
      this.abort(signal.reason);
      return;
    }
    signal?.addEventListener("abort", () => this.abort(signal.reason), { once: true });
    client._startStream(this, timeout).then(
      (link) => {
        this._link = link;
        if (this._stopped) client._stopStream(this, link); // stopped while the request was on its way
      },
      (error) => this._fail(error),
    );
  }

  /** @returns {this} */
  [Symbol.asyncIterator]() {
    return this;
  }

  /** @returns {Promise<IteratorResult<any>>} the next chunk */
  next() {
    const item = this._items.shift();
    if (item !== undefined) return "error" in item ? Promise.reject(item.error) : Promise.resolve({ value: item.value, done: false });
    if (this._finished || this._stopped) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
  }

  /**
   * Stop iterating (a `break` out of `for await` calls it): the server cancels the generator.
   *
   * @returns {Promise<IteratorResult<any>>}
   */
  return() {
    this._stop(null);
    return Promise.resolve({ value: undefined, done: true });
  }

  /**
   * @param {unknown} [error]
   * @returns {Promise<IteratorResult<any>>}
   */
  throw(error) {
    this._stop(null);
    return Promise.reject(error);
  }

  /**
   * Cancel the stream: the server cancels the generator, and the loop (or a waiting `next()`)
   * throws `reason` (default: an `AbortError` DOMException). Nothing happens once it has ended.
   *
   * @param {unknown} [reason]
   */
  abort(reason) {
    this._stop({ error: reason ?? new DOMException("The stream was aborted.", "AbortError") });
  }

  /**
   * Every chunk, once the stream has ended.
   *
   * @returns {Promise<any[]>}
   */
  async toArray() {
    const chunks = [];
    for await (const chunk of this) chunks.push(chunk);
    return chunks;
  }

  /**
   * A response for this call (from the client).
   *
   * @param {{error?: number | null, response?: unknown, is_stream?: boolean, is_end?: boolean}} rpc
   */
  _push(rpc) {
    if (this._finished) return;
    if (rpc.error !== null && rpc.error !== undefined) {
      this._end({ error: new RPCError(this.method, rpc.error, rpc.response) });
    } else if (!rpc.is_stream) {
      this._deliver({ value: rpc.response }); // not a streaming method: its one result
      this._end(null);
    } else if (rpc.is_end) {
      this._end(null);
    } else {
      this._deliver({ value: rpc.response });
    }
  }

  /**
   * It cannot go on: the link dropped, or it could not start (from the client).
   *
   * @param {unknown} error
   */
  _fail(error) {
    if (!this._finished && !this._stopped) this._end({ error });
  }

  /** @param {Item | null} last */
  _end(last) {
    this._finished = true;
    this.client._streams.delete(this.callId);
    if (last !== null) this._deliver(last);
    for (const waiter of this._waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
  }

  /** @param {Item} item */
  _deliver(item) {
    const waiter = this._waiters.shift();
    if (waiter === undefined) this._items.push(item);
    else if ("error" in item) waiter.reject(item.error);
    else waiter.resolve({ value: item.value, done: false });
  }

  /** @param {Item | null} last what a waiting `next()` gets: an error, or the end (null) */
  _stop(last) {
    if (this._stopped) return;
    this._stopped = true;
    this._items.length = 0;
    if (last !== null) this._deliver(last);
    for (const waiter of this._waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
    if (!this._finished) {
      this._finished = true;
      this.client._stopStream(this, this._link); // not started yet: _startStream sends nothing
    }
  }
}
