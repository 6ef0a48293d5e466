// The floor of the comparison benchmark: Node `ws` with the least a room server needs.
// The first text frame {"token":JWT,"channel":CH} is checked (HS256) and answered
// {"ok":true}; publications through the server API, or a member's later {"data":...}
// frames, are serialised once per publication and sent to every member as one text frame. No pings, no queues, no recovery.
// Compression off (perMessageDeflate false).
import http from "node:http";
import { WebSocketServer } from "ws";
import { apiHandler } from "./api.mjs";
import { hs256Verifier } from "./hs256.mjs";

const { PORT, SECRET, API_KEY } = process.env;
if (!PORT || !SECRET || !API_KEY) throw new Error("PORT, SECRET and API_KEY are required");
const verify = hs256Verifier(SECRET);

const rooms = new Map();

function publish(channel, data) {
  const members = rooms.get(channel);
  if (!members) return;
  const frame = Buffer.from(JSON.stringify(data));
  for (const ws of members) ws.send(frame, { binary: false });
}

const server = http.createServer(apiHandler(API_KEY, publish));
const wss = new WebSocketServer({ server, path: "/ws", perMessageDeflate: false, clientTracking: false });

wss.on("connection", (ws) => {
  let channel = "";
  ws.once("message", (message) => {
    try {
      const hello = JSON.parse(message.toString());
      verify(hello.token);
      channel = typeof hello.channel === "string" ? hello.channel : "";
    } catch {
      ws.send('{"error":"unauthorized"}');
      ws.close(3500, "unauthorized");
      return;
    }
    if (channel) {
      if (!rooms.has(channel)) rooms.set(channel, new Set());
      rooms.get(channel).add(ws);
    }
    ws.send('{"ok":true}');
    // later frames {"data":...} are publications into the sender's room, to every member
    ws.on("message", (frame) => {
      if (!channel) return;
      let message;
      try {
        message = JSON.parse(frame.toString());
      } catch {
        return;
      }
      if (message && "data" in message) publish(channel, message.data);
    });
  });
  ws.on("close", () => {
    const members = rooms.get(channel);
    if (!members) return;
    members.delete(ws);
    if (members.size === 0) rooms.delete(channel);
  });
});

server.listen(Number(PORT), "127.0.0.1");
