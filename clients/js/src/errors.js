/**
 * Errors of the Webshocket client: every error the client raises is a {@link WebshocketError}.
 *
 * @module
 */

/**
 * The RPC error codes of the wire protocol (docs/protocol.md), by name.
 *
 * @readonly
 */
export const ErrorCode = Object.freeze({
  /** No RPC method of that name. */
  METHOD_NOT_FOUND: -32601,
  /** The arguments don't fit the method's signature (or the request was malformed). */
  INVALID_PARAMS: -32602,
  /** The method raised an unexpected exception; also a stream that failed ("Stream aborted: ..."). */
  INTERNAL_SERVER_ERROR: -32603,
  /** The method's rate limit is spent. */
  RATE_LIMIT_EXCEEDED: -32000,
  /** The method raised `webshocket.RPCError` on purpose. */
  APPLICATION_ERROR: -32001,
  /** The method's `requires=` predicate is false for this connection. */
  ACCESS_DENIED: -32002,
});

/** @type {Map<number, string>} */
const CODE_NAMES = new Map(Object.entries(ErrorCode).map(([name, code]) => [code, name]));

/**
 * The name of an RPC error code (`"METHOD_NOT_FOUND"`, ...), or `"UNKNOWN"`.
 *
 * @param {number} code
 * @returns {string}
 */
export function errorCodeName(code) {
  return CODE_NAMES.get(code) ?? "UNKNOWN";
}

/** Base class of every error the client raises. */
export class WebshocketError extends Error {
  /**
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The server answered an RPC call (or a stream) with an error. */
export class RPCError extends WebshocketError {
  /**
   * @param {string} method the method that was called
   * @param {number} code one of {@link ErrorCode}
   * @param {unknown} response the server's message
   */
  constructor(method, code, response) {
    const text = typeof response === "string" ? response.trim() : JSON.stringify(response);
    super(`${errorCodeName(code)} (${code}) from '${method}': ${text}`);
    /** The numeric error code (see {@link ErrorCode}). */
    this.code = code;
    /** The code's name: `"METHOD_NOT_FOUND"`, `"ACCESS_DENIED"`, ... (`"UNKNOWN"` for another code). */
    this.codeName = errorCodeName(code);
    /** The method that was called. */
    this.method = method;
    /** The server's message, as it sent it. */
    this.response = response;
  }
}

/** No reply within the call's timeout (or no connection within it, while reconnecting). */
export class TimeoutError extends WebshocketError {}

/**
 * The connection closed: the call or stream was in flight when it dropped (it may have run on
 * the server), or the client is not connected and not reconnecting.
 */
export class ConnectionClosedError extends WebshocketError {
  /**
   * @param {string} message
   * @param {number | null} [code] the close code, when there was one
   */
  constructor(message, code = null) {
    super(message);
    /** The WebSocket close code (1006: closed without a close frame), or null. */
    this.code = code;
  }
}

/** Connecting failed: every attempt of `connect()`, or of an automatic reconnect. */
export class ConnectionFailedError extends WebshocketError {}
