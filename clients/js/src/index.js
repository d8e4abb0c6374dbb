/**
 * webshocket-client: a JavaScript/TypeScript client for Webshocket servers.
 *
 * ```js
 * import { WebshocketClient } from "webshocket-client";
 *
 * const client = new WebshocketClient("ws://localhost:5000");
 * await client.connect();
 * console.log(await client.call("add", 10, 20)); // 30
 * for await (const chunk of client.stream("ticks", 3)) console.log(chunk);
 * client.onChannel("news", (data) => console.log("news:", data));
 * ```
 *
 * @module
 */

export { NO_RECONNECT_CLOSE_CODES, Source, WebshocketClient } from "./client.js";
export { RpcStream } from "./stream.js";
export { jsonCodec, loadMsgpackCodec, msgpackCodec } from "./codec.js";
export { backoffDelay } from "./backoff.js";
export { Positions } from "./positions.js";
export {
  ConnectionClosedError,
  ConnectionFailedError,
  ErrorCode,
  RPCError,
  TimeoutError,
  WebshocketError,
  errorCodeName,
} from "./errors.js";
