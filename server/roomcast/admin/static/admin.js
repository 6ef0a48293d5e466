// Roomcast admin UI: plain DOM, no dependencies, no build step. Server data is only ever
// placed with textContent, never parsed as HTML.

const API = "/admin/api";
const REFRESH_MS = 2000;
let csrf = "";
let timer = null;
let selectedChannel = "";

const $ = (id) => document.getElementById(id);

async function call(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  if (method !== "GET" && csrf) options.headers["X-CSRF-Token"] = csrf;
  const response = await fetch(API + path, options);
  let payload = {};
  try {
    payload = await response.json();
  } catch {
    payload = { error: response.statusText };
  }
  if (response.status === 401 && path !== "/login") {
    showLogin("Your session ended; log in again.");
  }
  if (!response.ok) throw new Error(payload.error || `HTTP ${response.status}`);
  return payload;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(tbody, items, render, empty) {
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    render(tr, item);
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(tr, empty, "muted");
    td.colSpan = tbody.parentElement.tHead.rows[0].cells.length;
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
}

function uptime(seconds) {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  return h ? `${h}h ${m}m` : `${m}m ${seconds % 60}s`;
}

function button(label, onClick, accessibleName) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "secondary";
  b.textContent = label;
  if (accessibleName) b.setAttribute("aria-label", accessibleName);
  b.addEventListener("click", onClick);
  return b;
}

function render(state) {
  $("served-by").textContent = `served by node ${state.node.name}`;
  fill($("nodes").tBodies[0], state.nodes, (tr, n) => {
    cell(tr, n.name);
    cell(tr, n.version);
    cell(tr, n.num_clients, "num");
    cell(tr, n.num_users, "num");
    cell(tr, n.num_subs, "num");
    cell(tr, n.num_channels, "num");
    cell(tr, uptime(n.uptime));
  }, "No node has announced itself yet.");
  $("connections-title").textContent =
    `Connections on this node (${state.node.name}): ${state.connections_total}`;
  fill($("connections").tBodies[0], state.connections, (tr, c) => {
    cell(tr, c.user || "(anonymous)");
    cell(tr, c.client).className = "muted";
    cell(tr, c.channels.join(", ") || "none");
    const actions = cell(tr, "");
    if (c.user) {
      actions.appendChild(button("Disconnect", () => disconnect(c.user), `Disconnect user ${c.user}`));
    }
  }, "No connections on this node.");
  fill($("channels").tBodies[0], state.channels, (tr, ch) => {
    cell(tr, ch.channel);
    cell(tr, ch.num_clients, "num");
    const actions = cell(tr, "");
    actions.appendChild(button("Inspect", () => inspect(ch.channel), `Inspect channel ${ch.channel}`));
  }, "No channel has subscribers.");
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

async function refresh() {
  try {
    render(await call("GET", "/state"));
    if (selectedChannel) await inspect(selectedChannel);
  } catch (error) {
    $("updated").textContent = `Update failed: ${error.message}`;
  }
}

async function inspect(channel) {
  selectedChannel = channel;
  const detail = await call("GET", `/channel?name=${encodeURIComponent(channel)}`);
  $("channel-detail").hidden = false;
  $("channel-title").textContent = `Channel ${detail.channel}`;
  const presence = (detail.presence || []).map((p) => {
    const li = document.createElement("li");
    li.textContent = `${p.user || "(anonymous)"} — ${p.client}`;
    return li;
  });
  if (detail.presence === null) presence.push(Object.assign(document.createElement("li"), { textContent: "Presence is off for this channel." }));
  $("presence").replaceChildren(...presence);
  const history = (detail.history || []).map((pub) => {
    const li = document.createElement("li");
    const code = document.createElement("code");
    // Data that is not JSON (a binary namespace) comes as base64 in b64data.
    code.textContent = "b64data" in pub ? `base64 ${pub.b64data}` : JSON.stringify(pub.data);
    li.append(`#${pub.offset} `, code);
    return li;
  });
  if (detail.history === null) history.push(Object.assign(document.createElement("li"), { textContent: "History is off for this channel." }));
  $("history").replaceChildren(...history);
}

async function disconnect(user) {
  try {
    await call("POST", "/disconnect", { user });
    $("action-result").textContent = `Disconnected user ${user}.`;
    await refresh();
  } catch (error) {
    $("action-result").textContent = `Disconnect failed: ${error.message}`;
  }
}

function startLive() {
  stopLive();
  if ($("live").checked) timer = setInterval(refresh, REFRESH_MS);
}

function stopLive() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

function showLogin(message) {
  stopLive();
  csrf = "";
  $("console").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("password").focus();
}

async function showConsole(session) {
  csrf = session.csrf;
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = false;
  await refresh();
  startLive();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const session = await call("POST", "/login", { password: $("password").value });
    $("password").value = "";
    await showConsole(session);
  } catch (error) {
    $("login-error").textContent = `Login failed: ${error.message}`;
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await call("POST", "/logout", {});
  } finally {
    showLogin("Logged out.");
  }
});

$("publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const channel = $("publish-channel").value.trim();
  let data;
  try {
    data = JSON.parse($("publish-data").value);
  } catch {
    $("action-result").textContent = "Data must be JSON.";
    return;
  }
  try {
    const result = await call("POST", "/publish", { channel, data });
    const offset = result.offset ? ` at offset ${result.offset}` : "";
    $("action-result").textContent = `Published to ${channel}${offset}.`;
    await refresh();
  } catch (error) {
    $("action-result").textContent = `Publish failed: ${error.message}`;
  }
});

$("disconnect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  disconnect($("disconnect-user").value.trim());
});

$("live").addEventListener("change", startLive);

call("GET", "/session").then(showConsole, () => showLogin(""));
