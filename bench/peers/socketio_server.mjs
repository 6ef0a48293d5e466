// Node socket.io peer of the comparison benchmark, configured for the same job as Roomcast:
// a JWT (HS256) in the connect packet's auth, one room per channel joined by a
// "subscribe" event with an ack, publications through the server API (or a member's
// "publish" event, acked) emitted to the room as "pub" events. With REDIS_URL rooms span processes through @socket.io/redis-adapter.
// Defaults kept: pingInterval 25 s, pingTimeout 20 s, transports polling + websocket.
// Compression off: perMessageDeflate and httpCompression false.
import http from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";
import { apiHandler } from "./api.mjs";
import { hs256Verifier } from "./hs256.mjs";

const { PORT, SECRET, API_KEY, REDIS_URL } = process.env;
if (!PORT || !SECRET || !API_KEY) throw new Error("PORT, SECRET and API_KEY are required");
const verify = hs256Verifier(SECRET);

const io = new Server({ perMessageDeflate: false, httpCompression: false, serveClient: false });
const server = http.createServer(apiHandler(API_KEY, (channel, data) => io.to(channel).emit("pub", data)));
io.attach(server);

io.use((socket, next) => {
  try {
    const claims = verify(socket.handshake.auth?.token);
    socket.data.user = claims.sub;
    next();
  } catch {
    next(new Error("unauthorized"));
  }
});

io.on("connection", (socket) => {
  socket.on("subscribe", (channel, ack) => {
    const ok = typeof channel === "string" && channel !== "";
    if (ok) socket.join(channel);
    if (typeof ack === "function") ack(ok);
  });
  // a client publishes into a room it joined; every member (the sender too) receives it
  socket.on("publish", (message, ack) => {
    const channel = message?.channel;
    const ok = typeof channel === "string" && socket.rooms.has(channel) && "data" in message;
    if (ok) io.to(channel).emit("pub", message.data);
    if (typeof ack === "function") ack(ok);
  });
});

if (REDIS_URL) {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}
server.listen(Number(PORT), "127.0.0.1");
