// A Node.js server on `ws` speaking the benchmark's subset of the wire protocol: the peer of
// raw_picows.py, written the way a competent Node developer would write it.
//
// `ws` with its native `bufferutil` (frame masking) and no permessage-deflate; `msgpackr` for the
// msgpack dialect, as standard msgpack maps with string keys (no records), binary payloads as
// Buffers. Channel -> Set of sockets; a publish is encoded once (one `pack`) and the same Buffer
// goes to every subscriber with one `ws.send` each. Replies are byte-compatible with
// docs/protocol.md and with raw_picows.py (same keys, same order, same msgpack encoding).
//
// Usage: `node node_ws.mjs PORT`; prints `READY PORT {json info}` once accepting and exits when
// its stdin closes or on SIGTERM. Methods: `add`, `subscribe`, `publish`, `count` (see
// webshocket_app.py) and `worker` (the pid). The packages are resolved from the node_modules
// directory named by $WEBSHOCKET_BENCH_NODE_MODULES (the runner sets it, and NODE_PATH), else
// from benchmarks/node_modules of the clone this file is in (`npm ci --prefix benchmarks`).
// Node cannot raise its own RLIMIT_NOFILE: it runs with the one it inherits (the runner raises
// its own to the hard limit first).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SUBPROTOCOL = 'webshocket.v1';
const here = dirname(fileURLToPath(import.meta.url));
const modules = resolve(
  process.env.WEBSHOCKET_BENCH_NODE_MODULES || join(here, '..', '..', '..', 'benchmarks', 'node_modules'),
);
const require = createRequire(join(modules, 'index.js')); // resolves from `modules` itself
const { WebSocketServer } = require('ws');
const { Packr, isNativeAccelerationEnabled } = require('msgpackr');
const bufferutil = require('bufferutil');

// Standard msgpack: maps with string keys (fixmap when small, as Python's msgpack), no records.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true, int64AsType: 'auto' });

/** An RPC response packet, keys in protocol order. */
function response(callId, value, error = null) {
  const rpc = { type: 'response', call_id: callId, response: value, error, is_stream: false, is_end: error !== null };
  return packr.pack({ source: 5, rpc });
}

/** channel name -> Set of subscribed sockets */
const channels = new Map();

/** Encode once, send to every subscriber. */
function publish(channel, data) {
  const subscribers = channels.get(channel);
  if (subscribers === undefined) return;
  const encoded = packr.pack({ source: 2, data, channel });
  for (const ws of subscribers) ws.send(encoded);
}

function serve(port) {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });

  wss.on('connection', (ws) => {
    const joined = new Set(); // channels of this socket
    ws.on('error', () => {}); // a protocol error closes the socket; nothing else to do
    ws.on('close', () => {
      for (const name of joined) {
        const subscribers = channels.get(name);
        if (subscribers === undefined) continue;
        subscribers.delete(ws);
        if (subscribers.size === 0) channels.delete(name);
      }
    });
    ws.on('message', (message) => {
      let rpc;
      try {
        rpc = packr.unpack(message).rpc;
      } catch {
        return; // not msgpack: nothing in the benchmark sends that
      }
      if (rpc === null || typeof rpc !== 'object' || !('method' in rpc) || !('call_id' in rpc)) return;
      const { method, call_id: callId } = rpc;
      const args = rpc.args || [];
      let reply;
      if (method === 'add') {
        reply = response(callId, args[0] + args[1]);
      } else if (method === 'publish') {
        publish(args[0], args[1]);
        reply = response(callId, true);
      } else if (method === 'subscribe') {
        const channel = args[0];
        joined.add(channel);
        let subscribers = channels.get(channel);
        if (subscribers === undefined) channels.set(channel, (subscribers = new Set()));
        subscribers.add(ws);
        reply = response(callId, true);
      } else if (method === 'count') {
        reply = response(callId, wss.clients.size);
      } else if (method === 'worker') {
        reply = response(callId, process.pid);
      } else {
        reply = response(callId, `RPC method '${method}' not found.`, -32601);
      }
      ws.send(reply);
    });
  });

  wss.on('listening', () => {
    const info = {
      impl: 'node-ws',
      version: packageVersion('ws'),
      node: process.versions.node,
      ws: packageVersion('ws'),
      bufferutil: packageVersion('bufferutil'),
      bufferutil_native: bufferutilNative(),
      msgpackr: packageVersion('msgpackr'),
      msgpackr_native: isNativeAccelerationEnabled,
      modules,
      nofile: nofile(),
      pid: process.pid,
    };
    process.stdout.write(`READY ${wss.address().port} ${JSON.stringify(info)}\n`);
  });
}

function packageVersion(name) {
  return JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8')).version;
}

/** True when bufferutil loaded its compiled addon and ws uses that very module. */
function bufferutilNative() {
  const fallback = require('bufferutil/fallback'); // what bufferutil exports when the addon does not load
  const seenByWs = createRequire(require.resolve('ws'))('bufferutil');
  return bufferutil !== fallback && seenByWs === bufferutil && !process.env.WS_NO_BUFFER_UTIL;
}

/** The soft RLIMIT_NOFILE (Node has no getrlimit: /proc/self/limits). */
function nofile() {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line.split(/\s+/)[3];
    return soft === 'unlimited' ? soft : Number(soft);
  } catch {
    return null;
  }
}

const stop = () => process.exit(0); // no graceful close of thousands of sockets: the benchmark is over
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
serve(Number(process.argv[2]));
