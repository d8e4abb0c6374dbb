// A type test: `npm run typecheck` compiles it against src/index.d.ts (it is never run).
import {
  ConnectionClosedError,
  ErrorCode,
  RPCError,
  TimeoutError,
  WebshocketClient,
  type ClientEvents,
  type ConnectionState,
  type Packet,
  type SessionState,
} from "webshocket-client";

async function usage(WebSocketImpl: new (url: string, protocols?: string | string[]) => any): Promise<void> {
  const client = new WebshocketClient("ws://127.0.0.1:5000", {
    WebSocket: WebSocketImpl,
    token: async () => "a.jwt.token",
    tokenIn: "query",
    retry: true,
    maxRetryAttempt: 3,
    retryInterval: 100,
    maxRetryInterval: 2000,
    timeout: 5000,
    resume: { token: null, positions: { news: ["epoch", 3] } },
  });
  await client.connect();
  const sum: number = await client.call<number>("add", 1, 2);
  const user = await client.callWith<string>("whoami", { kwargs: { verbose: true }, timeout: 100, idempotent: true });
  const chunks: number[] = [];
  for await (const chunk of client.stream<number>("ticks", 3)) chunks.push(chunk);
  const controller = new AbortController();
  const stream = client.streamWith<{ n: number }>("feed", { args: [1], signal: controller.signal });
  const first = await stream.next();
  if (!first.done) {
    const n: number = first.value.n;
    void n;
  }
  stream.abort();
  const all: string[] = await client.stream<string>("words").toArray();
  const stop = client.onChannel<{ text: string }>("news", (data, packet: Packet<{ text: string }>) => {
    const text: string = data.text;
    const offset: number | undefined = packet.offset;
    void text, offset;
  });
  stop();
  client.on("reconnect", (recovered: boolean) => void recovered);
  client.on("disconnect", (code: number, reason: string) => void [code, reason]);
  const onState: ClientEvents["state"] = (state: ConnectionState) => void state;
  client.on("state", onState);
  // @ts-expect-error: not an event
  client.on("nope", () => {});
  // @ts-expect-error: the reconnect listener gets a boolean
  client.on("reconnect", (recovered: string) => void recovered);
  try {
    await client.call("fail");
  } catch (error) {
    if (error instanceof RPCError && error.code === ErrorCode.APPLICATION_ERROR) console.log(error.codeName, error.response);
    if (error instanceof TimeoutError || error instanceof ConnectionClosedError) console.log(error.message);
  }
  const saved: SessionState = client.session;
  const state: ConnectionState = client.state;
  const recovered: boolean | null = client.recovered;
  client.send({ hello: "world" });
  await client.close();
  void [sum, user, chunks, all, saved, state, recovered];
}
void usage;
