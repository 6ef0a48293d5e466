// The server API both Node peers answer, shaped as Centrifugo's (POST /api/publish with
// {"channel","data"}, POST /api/batch with {"commands":[{"publish":{...}}]}, X-API-Key),
// so the load client publishes to every peer with the same requests. GET /health is 200.
const MAX_BODY = 1 << 20;

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

function badRequest(res) {
  reply(res, 400, { error: { code: 107, message: "bad request" } });
}

// publish(channel, data) delivers one publication; it must not throw on good input.
export function apiHandler(apiKey, publish) {
  return (req, res) => {
    if (req.method === "GET" && req.url === "/health") return reply(res, 200, {});
    if (req.method !== "POST" || !req.url.startsWith("/api/")) {
      return reply(res, 404, { error: { code: 102, message: "not found" } });
    }
    if (req.headers["x-api-key"] !== apiKey) {
      return reply(res, 401, { error: { code: 101, message: "unauthorized" } });
    }
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reply(res, 413, { error: { code: 107, message: "body too large" } });
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on("end", () => {
      if (res.headersSent) return;
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return badRequest(res);
      }
      const method = req.url.slice("/api/".length);
      const one = (cmd) => {
        if (!cmd || typeof cmd.channel !== "string" || cmd.channel === "" || !("data" in cmd)) {
          return { error: { code: 107, message: "bad request" } };
        }
        publish(cmd.channel, cmd.data);
        return {};
      };
      if (method === "publish") {
        const result = one(body);
        return result.error ? reply(res, 200, result) : reply(res, 200, { result });
      }
      if (method === "batch") {
        if (!body || !Array.isArray(body.commands)) return badRequest(res);
        const replies = body.commands.map((cmd) => {
          if (!cmd || !cmd.publish) return { error: { code: 102, message: "not found" } };
          const result = one(cmd.publish);
          return result.error ? result : { publish: result };
        });
        return reply(res, 200, { replies });
      }
      return reply(res, 404, { error: { code: 102, message: "not found" } });
    });
  };
}
