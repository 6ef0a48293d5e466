// A browser chat on Roomcast with centrifuge-js: one lobby channel with history, presence,
// join/leave events and automatic recovery after a reconnect. The page's own server
// (demo.py) hands out connection tokens and tells where Roomcast listens.
import {
  Centrifuge,
  type ClientInfo,
  type PublicationContext,
  type SubscribedContext,
  type Subscription,
} from "centrifuge";

/** What the page's server answers on /config.json. */
interface DemoConfig {
  websocket: string;
  channel: string;
}

/** The data of one chat publication; the sender comes from the server's ClientInfo. */
interface ChatMessage {
  text: string;
}

function isChatMessage(data: unknown): data is ChatMessage {
  return (
    typeof data === "object" &&
    data !== null &&
    typeof (data as { text?: unknown }).text === "string"
  );
}

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (found === null) throw new Error(`#${id} is missing from the page`);
  return found as T;
}

const ui = {
  status: element<HTMLParagraphElement>("status"),
  join: element<HTMLFormElement>("join"),
  name: element<HTMLInputElement>("name"),
  joinError: element<HTMLParagraphElement>("join-error"),
  room: element<HTMLElement>("room"),
  online: element<HTMLParagraphElement>("online"),
  messages: element<HTMLOListElement>("messages"),
  send: element<HTMLFormElement>("send"),
  text: element<HTMLInputElement>("text"),
  notice: element<HTMLParagraphElement>("notice"),
};

/** Publications already on screen, as epoch:offset, so history and recovery add no copies. */
const shown = new Set<string>();
let epoch = "";

function setStatus(state: "disconnected" | "connecting" | "connected", text: string): void {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function addLine(who: string | null, text: string): void {
  const item = document.createElement("li");
  if (who === null) {
    item.className = "system";
    item.textContent = text;
  } else {
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = `${who}:`;
    item.append(name, text);
  }
  ui.messages.append(item);
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function showPublication(pub: PublicationContext): void {
  const key = `${epoch}:${pub.offset ?? ""}`;
  if (pub.offset !== undefined && shown.has(key)) return;
  shown.add(key);
  if (!isChatMessage(pub.data)) return; // not a chat line: ignore, never render blindly
  addLine(pub.info?.user || "someone", pub.data.text);
}

async function fetchToken(user: string): Promise<string> {
  const response = await fetch("/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user }),
  });
  const body = (await response.json()) as { token?: string; error?: string };
  if (!response.ok || body.token === undefined) {
    throw new Error(body.error ?? `token request failed: HTTP ${response.status}`);
  }
  return body.token;
}

async function updatePresence(sub: Subscription): Promise<void> {
  try {
    const presence = await sub.presence();
    const users = new Set(Object.values(presence.clients).map((c: ClientInfo) => c.user));
    ui.online.textContent = `Online: ${[...users].sort().join(", ")}`;
  } catch {
    // Presence is a nicety; the chat works without it.
  }
}

async function loadHistory(sub: Subscription): Promise<void> {
  const history = await sub.history({ limit: 50 });
  epoch = history.epoch;
  for (const pub of history.publications) showPublication(pub);
}

async function join(user: string): Promise<void> {
  const config = (await (await fetch("/config.json")).json()) as DemoConfig;
  const client = new Centrifuge(config.websocket, { getToken: () => fetchToken(user) });
  client.on("connecting", (ctx) => setStatus("connecting", `Connecting… (${ctx.reason})`));
  client.on("connected", () => setStatus("connected", `Connected as ${user}`));
  client.on("disconnected", (ctx) => setStatus("disconnected", `Disconnected: ${ctx.reason}`));

  const sub = client.newSubscription(config.channel);
  sub.on("publication", showPublication);
  sub.on("join", () => void updatePresence(sub));
  sub.on("leave", () => void updatePresence(sub));
  sub.on("subscribed", (ctx: SubscribedContext) => {
    const position = ctx.streamPosition;
    if (ctx.wasRecovering && ctx.recovered) {
      ui.notice.textContent = "Back online; missed messages recovered.";
    } else if (ctx.wasRecovering) {
      ui.notice.textContent = "Back online; the server lost its history, showing what it has.";
    }
    if (!ctx.recovered) {
      epoch = position?.epoch ?? "";
      void loadHistory(sub);
    }
    void updatePresence(sub);
  });

  ui.send.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text) return;
    const message: ChatMessage = { text };
    sub.publish(message).then(
      () => {
        ui.text.value = "";
      },
      (error: unknown) => {
        ui.notice.textContent = `Not sent: ${error instanceof Error ? error.message : String(error)}`;
      },
    );
  });

  ui.join.hidden = true;
  ui.room.hidden = false;
  sub.subscribe();
  client.connect();
  ui.text.focus();
}

ui.join.addEventListener("submit", (event) => {
  event.preventDefault();
  const user = ui.name.value.trim();
  join(user).catch((error: unknown) => {
    ui.joinError.textContent = error instanceof Error ? error.message : String(error);
  });
});
