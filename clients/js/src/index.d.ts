/**
 * Types of webshocket-client (hand-written; `npm run typecheck` checks them against a usage
 * file and the JavaScript against its JSDoc).
 */

/** `"disconnected"`: not yet connected, or between reconnect attempts; `"closed"`: no connection and none coming. */
export type ConnectionState = "disconnected" | "connecting" | "connected" | "closed";

/** What the client needs of a WebSocket implementation (the browser's, Node's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string | ArrayBufferLike | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** A dialect: how packets are written. */
export interface Codec {
  readonly name: "json" | "msgpack";
  readonly subprotocol: string;
  readonly sessionSubprotocol: string;
  /** Whether the server needs the subprotocol to speak this dialect (msgpack: yes). */
  readonly required: boolean;
  encode(packet: object): string | Uint8Array;
  decode(message: string | Uint8Array): any;
}

/** The session to resume: the server's last token and the last `[epoch, offset]` seen per channel. */
export interface SessionState {
  token: string | null;
  positions: Record<string, [string, number]>;
}

export type TokenSource = string | null | (() => string | null | Promise<string | null>);

export interface ClientOptions {
  /** WebSocket implementation (default: `globalThis.WebSocket`; in Node 20, pass the `ws` package's). */
  WebSocket?: WebSocketConstructor | (new (url: string, protocols?: string | string[]) => any);
  /** More subprotocols to offer (after the dialect's). */
  protocols?: string[];
  /** A credential for the handshake, or a function giving a fresh one for each (re)connect. */
  token?: TokenSource;
  /** Where the token goes: a `bearer.<token>` subprotocol (default) or the query string. */
  tokenIn?: "subprotocol" | "query";
  /** Query parameter for `tokenIn: "query"` (default `"token"`). */
  tokenParam?: string;
  /** Ask for a session (servers with recovery resume it after a reconnect). Default true. */
  session?: boolean;
  /** A session to resume from the start (e.g. `client.session`, stored before a page reload). */
  resume?: Partial<SessionState> | null;
  /** Channels whose last position is remembered (default 1000). */
  maxPositions?: number;
  /** Dialect: `"json"` (default), `"msgpack"` (needs the msgpackr package) or a Codec. */
  codec?: "json" | "msgpack" | Codec;
  /** Default timeout of a call, ms (default 30000; null: none). */
  timeout?: number | null;
  /** Timeout of one connection attempt (open and session answer), ms (default 10000). */
  connectTimeout?: number;
  /** Retry the first connect and reconnect after a drop (default true). */
  retry?: boolean;
  /** Attempts of connect(), and of each reconnect (default 5). */
  maxRetryAttempt?: number;
  /** First backoff ceiling, ms (default 500): attempt n waits half to all of min(maxRetryInterval, retryInterval * 2**n). */
  retryInterval?: number;
  /** Cap of the backoff, ms (default 30000). */
  maxRetryInterval?: number;
  /** Close codes that end the client instead of reconnecting (default NO_RECONNECT_CLOSE_CODES). */
  noReconnectCodes?: Iterable<number>;
}

export interface CallOptions {
  /** Positional arguments. */
  args?: unknown[];
  /** Keyword arguments of the Python method. */
  kwargs?: Record<string, unknown>;
  /** ms for the reply, including any wait for a reconnect (default: the client's; null: none). */
  timeout?: number | null;
  /** Safe to repeat: re-sent after a reconnect if the link drops before the reply. */
  idempotent?: boolean;
  /** Aborting rejects the call with the signal's reason. */
  signal?: AbortSignal;
}

export interface StreamOptions {
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** ms to wait for the connection while reconnecting (default: the client's timeout). */
  timeout?: number | null;
  /** Aborting cancels the stream on the server; the loop throws the signal's reason. */
  signal?: AbortSignal;
}

/** An RPC request or response, as on the wire. */
export interface RPCPayload {
  type: "request" | "response";
  call_id: string;
  method?: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  response?: unknown;
  error?: number | null;
  is_stream?: boolean;
  is_end?: boolean;
}

/** A packet as it arrived (keys whose value is null may be missing). */
export interface Packet<T = any> {
  source: number;
  data?: T;
  rpc?: RPCPayload;
  channel?: string;
  timestamp?: number;
  correlation_id?: string;
  offset?: number;
  epoch?: string;
}

export interface ClientEvents {
  /** A message published on a channel this connection is subscribed to. */
  channel: (data: any, packet: Packet) => void;
  /** A broadcast. */
  broadcast: (data: any, packet: Packet) => void;
  /** The server's `connection.send(data)` (a custom packet), or another pushed packet. */
  message: (data: any, packet: Packet) => void;
  /** Every pushed packet (channel, broadcast, custom). */
  packet: (packet: Packet) => void;
  /** The connection was lost (not after close()); `code` 1006: no close frame. */
  disconnect: (code: number, reason: string) => void;
  /** Back after an automatic reconnect; `recovered`: the server gave the session back. */
  reconnect: (recovered: boolean) => void;
  /** Reconnecting gave up; the client is closed. */
  reconnectFailed: (error: ConnectionFailedError) => void;
  state: (state: ConnectionState, previous: ConnectionState) => void;
  /** A listener threw, or a message could not be decoded. */
  error: (error: unknown) => void;
}

/** Source numbers of the wire protocol. */
export declare const Source: Readonly<{
  BROADCAST: 1;
  CHANNEL: 2;
  UNKNOWN: 3;
  CUSTOM: 4;
  RPC: 5;
  SESSION: 6;
}>;

export declare const NO_RECONNECT_CLOSE_CODES: readonly number[];

export declare class WebshocketClient {
  constructor(url: string | URL, options?: ClientOptions);
  readonly url: string;
  readonly options: Required<Omit<ClientOptions, "WebSocket">>;
  /** Close codes after which the client does not reconnect. */
  noReconnectCodes: Set<number>;
  readonly state: ConnectionState;
  /** true: the server gave the session back; false: a new session; null: no session. */
  readonly recovered: boolean | null;
  /** The last connection's close code (1006: no close frame); null while connected. */
  readonly closeCode: number | null;
  /** The subprotocol the server chose ("" for none). */
  readonly protocol: string;
  readonly connected: boolean;
  readonly reconnecting: boolean;
  /** The session to resume later (`resume` option). */
  readonly session: SessionState;

  connect(): Promise<this>;
  close(code?: number, reason?: string): Promise<void>;

  call<T = any>(method: string, ...args: unknown[]): Promise<T>;
  callWith<T = any>(method: string, options?: CallOptions): Promise<T>;
  stream<T = any>(method: string, ...args: unknown[]): RpcStream<T>;
  streamWith<T = any>(method: string, options?: StreamOptions): RpcStream<T>;
  send(data: unknown): void;

  on<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): () => void;
  off<E extends keyof ClientEvents>(event: E, listener: ClientEvents[E]): void;
  onChannel<T = any>(channel: string, listener: (data: T, packet: Packet<T>) => void): () => void;
}

export declare class RpcStream<T = any> implements AsyncIterableIterator<T> {
  readonly method: string;
  readonly callId: string;
  [Symbol.asyncIterator](): this;
  next(): Promise<IteratorResult<T, undefined>>;
  return(): Promise<IteratorResult<T, undefined>>;
  throw(error?: unknown): Promise<IteratorResult<T, undefined>>;
  abort(reason?: unknown): void;
  toArray(): Promise<T[]>;
}

export declare const jsonCodec: Codec;
export declare function msgpackCodec(msgpack: {
  pack(value: any): Uint8Array;
  unpack(bytes: Uint8Array): any;
}): Codec;
export declare function loadMsgpackCodec(): Promise<Codec>;
export declare function backoffDelay(attempt: number, interval: number, maxInterval: number, random?: () => number): number;

export declare class Positions {
  constructor(max?: number, initial?: Record<string, [string, number]>);
  accept(packet: { channel?: unknown; epoch?: unknown; offset?: unknown }): boolean;
  remember(channel: string, epoch: string, offset: number): void;
  toJSON(): Record<string, [string, number]>;
}

export declare const ErrorCode: Readonly<{
  METHOD_NOT_FOUND: -32601;
  INVALID_PARAMS: -32602;
  INTERNAL_SERVER_ERROR: -32603;
  RATE_LIMIT_EXCEEDED: -32000;
  APPLICATION_ERROR: -32001;
  ACCESS_DENIED: -32002;
}>;
export type ErrorCodeName = keyof typeof ErrorCode;
export declare function errorCodeName(code: number): ErrorCodeName | "UNKNOWN";

export declare class WebshocketError extends Error {
  constructor(message: string, options?: { cause?: unknown });
}
export declare class RPCError extends WebshocketError {
  constructor(method: string, code: number, response: unknown);
  /** The numeric code (see ErrorCode). */
  readonly code: number;
  readonly codeName: ErrorCodeName | "UNKNOWN";
  readonly method: string;
  /** The server's message. */
  readonly response: unknown;
}
export declare class TimeoutError extends WebshocketError {}
export declare class ConnectionClosedError extends WebshocketError {
  constructor(message: string, code?: number | null);
  /** The close code (1006: no close frame), or null. */
  readonly code: number | null;
}
export declare class ConnectionFailedError extends WebshocketError {}
