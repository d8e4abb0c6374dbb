/**
 * Dialects (how packets are written) and the bytes of a WebSocket message.
 *
 * A Webshocket server speaks JSON to a client that asks for no subprotocol or for
 * `webshocket.json`, and msgpack to one that asks for `webshocket.v1`; it sends every packet as
 * a binary message, and accepts text or binary ones.
 *
 * @module
 */

/**
 * @typedef {object} Codec
 * @property {"json" | "msgpack"} name the dialect
 * @property {string} subprotocol the subprotocol naming the dialect
 * @property {string} sessionSubprotocol the subprotocol asking for a session in this dialect
 * @property {boolean} required whether the server needs the subprotocol to speak this dialect
 * @property {(packet: object) => string | Uint8Array} encode one packet to one message
 * @property {(message: string | Uint8Array) => any} decode one message to one packet
 */

const utf8 = new TextDecoder("utf-8");

/** @type {Codec} The JSON dialect (the default; the server's answer to any generic client). */
export const jsonCodec = Object.freeze({
  name: "json",
  subprotocol: "webshocket.json",
  sessionSubprotocol: "webshocket.json+session",
  required: false,
  encode: (packet) => JSON.stringify(packet),
  decode: (message) => JSON.parse(typeof message === "string" ? message : utf8.decode(message)),
});

/**
 * The msgpack dialect (the Python client's), over an encoder and decoder the caller provides,
 * e.g. msgpackr's `pack` / `unpack` (maps must decode to plain objects).
 *
 * @param {{pack: (value: any) => Uint8Array, unpack: (bytes: Uint8Array) => any}} msgpack
 * @returns {Codec}
 */
export function msgpackCodec(msgpack) {
  const encoder = new TextEncoder();
  return Object.freeze({
    name: "msgpack",
    subprotocol: "webshocket.v1",
    sessionSubprotocol: "webshocket.v1+session",
    required: true,
    encode: (packet) => msgpack.pack(packet),
    decode: (message) => msgpack.unpack(typeof message === "string" ? encoder.encode(message) : message),
  });
}

/**
 * The msgpack dialect over the `msgpackr` package, imported on first use (an optional peer
 * dependency: `npm install msgpackr`).
 *
 * @returns {Promise<Codec>}
 */
export async function loadMsgpackCodec() {
  /** @type {any} */
  let msgpackr;
  try {
    const name = "msgpackr"; // a variable: bundlers leave an optional dependency alone
    msgpackr = await import(/* webpackIgnore: true */ /* @vite-ignore */ name);
  } catch (error) {
    throw new Error('codec "msgpack" needs the msgpackr package (npm install msgpackr), or pass msgpackCodec({pack, unpack})', {
      cause: error,
    });
  }
  const packr = new msgpackr.Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
  return msgpackCodec({ pack: (value) => packr.pack(value), unpack: (bytes) => packr.unpack(bytes) });
}

/**
 * The payload of a message event as a string (a text message) or bytes. Browsers give an
 * `ArrayBuffer` (with `binaryType = "arraybuffer"`) or a `Blob`; the `ws` package a `Buffer`
 * (or an array of them); Node's built-in WebSocket an `ArrayBuffer` or a `Blob`.
 *
 * @param {unknown} data
 * @returns {string | Uint8Array | Promise<Uint8Array>} a promise only for a Blob
 */
export function messageBytes(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return concat(data.map((part) => /** @type {Uint8Array} */ (messageBytes(part))));
  if (typeof Blob !== "undefined" && data instanceof Blob) return data.arrayBuffer().then((b) => new Uint8Array(b));
  throw new TypeError(`unexpected WebSocket message data: ${Object.prototype.toString.call(data)}`);
}

/**
 * @param {Uint8Array[]} parts
 * @returns {Uint8Array}
 */
function concat(parts) {
  const out = new Uint8Array(parts.reduce((size, part) => size + part.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
