// Drives the official centrifuge-js SDK for Roomcast's integration tests.
// Reads one JSON command per stdin line, writes one JSON event per stdout line.
// Commands: {"op":"connect","url":...,"token":...,"tokens":[...]} | {"op":"subscribe","channel":...}
// connect may carry "transports" ([{transport, endpoint}]: HTTP streaming, SSE) and
// "protocol": "protobuf"; subscribe may carry "options" (e.g. {"map": true}).
// | {"op":"publish","channel":...,"data":...} | {"op":"presence","channel":...}
// | {"op":"history","channel":...,"limit":N} | {"op":"disconnect"} | {"op":"reconnect"} | {"op":"exit"}
import readline from 'node:readline';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { Centrifuge } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';

let client = null;
let binary = false; // the Protobuf SDK: payloads are bytes (JSON text here) both ways
const subs = new Map();
const encodeData = (data) => (binary ? new TextEncoder().encode(JSON.stringify(data)) : data);
const decodeData = (data) => (data instanceof Uint8Array ? JSON.parse(new TextDecoder().decode(data)) : data);
const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

function attachSubscription(channel, options) {
  const sub = client.newSubscription(channel, options || {});
  sub.on('subscribed', (ctx) => emit({ event: 'subscribed', channel, wasRecovering: ctx.wasRecovering, recovered: ctx.recovered, recoverable: ctx.recoverable, positioned: ctx.positioned, streamPosition: ctx.streamPosition || null }));
  sub.on('subscribing', (ctx) => emit({ event: 'subscribing', channel, code: ctx.code, reason: ctx.reason }));
  sub.on('unsubscribed', (ctx) => emit({ event: 'unsubscribed', channel, code: ctx.code, reason: ctx.reason }));
  sub.on('publication', (ctx) => emit({ event: 'publication', channel, data: decodeData(ctx.data), offset: ctx.offset ?? null, info: ctx.info || null }));
  sub.on('join', (ctx) => emit({ event: 'join', channel, user: ctx.info.user }));
  sub.on('leave', (ctx) => emit({ event: 'leave', channel, user: ctx.info.user }));
  sub.on('error', (ctx) => emit({ event: 'sub_error', channel, code: ctx.error.code, message: ctx.error.message }));
  subs.set(channel, sub);
  return sub;
}

async function handle(cmd) {
  switch (cmd.op) {
    case 'connect': {
      const tokens = [...(cmd.tokens || [])];
      binary = cmd.protocol === 'protobuf';
      const Sdk = binary ? CentrifugeProtobuf : Centrifuge;
      client = new Sdk(cmd.transports || cmd.url, {
        websocket: WebSocket,
        eventsource: EventSource,
        emulationEndpoint: cmd.emulationEndpoint || '/emulation',
        token: cmd.token,
        getToken: tokens.length ? async () => { const t = tokens.shift(); emit({ event: 'get_token' }); return t; } : undefined,
        minReconnectDelay: 100,
        maxReconnectDelay: 1000,
      });
      client.on('connecting', (ctx) => emit({ event: 'connecting', code: ctx.code, reason: ctx.reason }));
      client.on('connected', (ctx) => emit({ event: 'connected', client: ctx.client, transport: ctx.transport }));
      client.on('disconnected', (ctx) => emit({ event: 'disconnected', code: ctx.code, reason: ctx.reason }));
      client.on('error', (ctx) => emit({ event: 'error', type: ctx.type, code: ctx.error.code, message: ctx.error.message }));
      client.on('publication', (ctx) => emit({ event: 'server_publication', channel: ctx.channel, data: decodeData(ctx.data), offset: ctx.offset ?? null }));
      client.on('subscribed', (ctx) => emit({ event: 'server_subscribed', channel: ctx.channel, recovered: ctx.recovered }));
      client.connect();
      return null;
    }
    case 'subscribe': attachSubscription(cmd.channel, cmd.options).subscribe(); return null;
    case 'publish': return await subs.get(cmd.channel).publish(encodeData(cmd.data));
    case 'presence': return await subs.get(cmd.channel).presence();
    case 'presence_stats': return await subs.get(cmd.channel).presenceStats();
    case 'history': {
      const result = await subs.get(cmd.channel).history({ limit: cmd.limit ?? 10 });
      return { ...result, publications: result.publications.map((p) => ({ ...p, data: decodeData(p.data) })) };
    }
    case 'rpc': return await client.rpc(cmd.method, cmd.data || {});
    case 'disconnect': client.disconnect(); return null;
    case 'reconnect': client.connect(); return null;
    case 'exit': if (client) client.disconnect(); setTimeout(() => process.exit(0), 50); return null;
    default: throw new Error(`unknown op ${cmd.op}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  try {
    const result = await handle(cmd);
    emit({ event: 'result', seq: cmd.seq, result: result === undefined ? null : result });
  } catch (err) {
    emit({ event: 'result', seq: cmd.seq, error: { code: err.code ?? null, message: err.message ?? String(err) } });
  }
});
rl.on('close', () => process.exit(0));
