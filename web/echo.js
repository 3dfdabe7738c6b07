// Echo's chat page: plain JavaScript, no build step. Streams /api/ask (server-sent events
// over fetch), shows each circuit's draft in its own panel and the memories used, lists the
// conversations to come back to, and draws the insights. Replies are Markdown, rendered by
// the vendored marked and sanitized by DOMPurify. The owner token (or a user's key) lives
// only in this tab's sessionStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const BASE = location.pathname.replace(/\/ui(\/.*)?$/, ""); // Echo's routes, wherever the app is mounted
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("echo-token") || "";
tokenInput.addEventListener("input", () => sessionStorage.setItem("echo-token", tokenInput.value));
// A user name with the key the owner made for it (echo-server user-key) brings that user's memories.
const userInput = $("user");
userInput.value = sessionStorage.getItem("echo-user") || "";
userInput.addEventListener("input", () => sessionStorage.setItem("echo-user", userInput.value.trim()));

// The conversation this tab is in: Echo hands out its id with the first answer, and the next
// messages carry it, so Echo sees what was just said; a reload reads it back. "New
// conversation" leaves it (it stays in the list).
let conversation = sessionStorage.getItem("echo-conversation");
function enter(id) {
  conversation = id;
  if (id) sessionStorage.setItem("echo-conversation", id);
  else sessionStorage.removeItem("echo-conversation");
  for (const item of $("conversation-list").children) {
    const current = item.dataset.id === id;
    item.classList.toggle("current", current);
    if (current) item.setAttribute("aria-current", "true");
    else item.removeAttribute("aria-current");
  }
}
$("new-conversation").addEventListener("click", () => {
  enter(null);
  $("log").replaceChildren();
  prompt.focus();
});

// A reply as Markdown: marked writes the HTML, DOMPurify strips whatever could run (scripts,
// event handlers, javascript: links) before it touches the page, and images and forms too: a
// reply never makes the browser fetch anything or post anywhere. Code blocks get a copy button.
const ALLOWED = { FORBID_TAGS: ["img", "picture", "video", "audio", "source", "style", "form", "input", "button", "textarea", "select"], FORBID_ATTR: ["style"] };
function showMarkdown(element, text) {
  element.innerHTML = DOMPurify.sanitize(marked.parse(text, { gfm: true, breaks: true }), ALLOWED);
  for (const link of element.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  for (const code of element.querySelectorAll("pre > code")) {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "복사 Copy";
    copy.addEventListener("click", async () => {
      await navigator.clipboard.writeText(code.textContent).catch(() => {});
      copy.textContent = "복사됨 Copied";
    });
    code.parentElement.before(copy);
  }
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (tokenInput.value) h.Authorization = `Bearer ${tokenInput.value}`;
  return h;
}

// ---- chat --------------------------------------------------------------------------

const prompt = $("prompt");
let composing = false; // Korean (and any IME) input: Enter ends the composition, not the message
prompt.addEventListener("compositionstart", () => { composing = true; });
prompt.addEventListener("compositionend", () => { composing = false; });
prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !composing && event.keyCode !== 229) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (!text) return;
  prompt.value = "";
  $("send").disabled = true;
  try {
    await ask(text);
  } finally {
    $("send").disabled = false;
    prompt.focus();
  }
});

function exchangeView(text) {
  const view = $("exchange").content.firstElementChild.cloneNode(true);
  view.querySelector(".you").textContent = text; // a prompt is shown as it was typed, never as HTML
  $("log").append(view);
  return view;
}

async function ask(text) {
  const view = exchangeView(text);
  const reply = view.querySelector(".reply");
  const status = view.querySelector(".status");
  const panels = view.querySelector(".circuits");
  const panel = (name) => { // one panel per circuit, in the order the answer gives
    let found = panels.querySelector(`details[data-circuit="${name}"]`);
    if (!found) {
      found = document.createElement("details");
      found.className = "circuit";
      found.dataset.circuit = name;
      const summary = document.createElement("summary");
      summary.textContent = name;
      found.append(summary, document.createElement("pre"));
      panels.append(found);
    }
    return found;
  };
  status.textContent = "…";
  let response;
  try {
    response = await fetch(`${BASE}/api/ask`, { method: "POST", headers: headers(), body: JSON.stringify({ prompt: text, stream: true, ...(userInput.value.trim() ? { user: userInput.value.trim() } : {}), ...(conversation ? { conversation } : {}) }) });
  } catch (error) {
    status.textContent = `Echo cannot be reached: ${error}`;
    return;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    status.textContent = body.error ? body.error.message : `HTTP ${response.status}`;
    return;
  }
  let order = []; // the concat order, as the answer's start event gives it
  const drafts = {};
  let merge = null;
  const show = () => { // with concat the reply grows as the drafts do
    if (merge === "concat") showMarkdown(reply, order.map((n) => drafts[n]).filter(Boolean).join("\n\n"));
  };
  for await (const [name, data] of events(response)) {
    if (name === "start") {
      merge = data.merge;
      order = data.order || [];
      enter(data.conversation);
      if (data.route === "circuits") order.forEach(panel);
      status.textContent = data.route === "circuits" ? "the circuits are answering…" : "";
      showMemories(view, data.memories || []);
      showFacts(view, data.facts || [], data.memories || []);
    } else if (name === "circuit_start") {
      panel(data.circuit).classList.add("running");
    } else if (name === "token") {
      drafts[data.circuit] = (drafts[data.circuit] || "") + data.text;
      panel(data.circuit).querySelector("pre").textContent = drafts[data.circuit];
      show();
    } else if (name === "circuit_done" || name === "circuit_failed") {
      const p = panel(data.circuit);
      p.classList.remove("running");
      p.classList.add(name === "circuit_done" ? "done" : "failed");
      if (data.reason) p.querySelector("pre").textContent += `\n[${data.reason}]`;
    } else if (name === "done") {
      showMarkdown(reply, data.reply);
      loadConversations();
      status.textContent = data.degraded ? `degraded: ${Object.keys(data.failed).join(", ")} failed` : "";
      if (data.memories) showMemories(view, data.memories);
      showFacts(view, data.facts || [], data.memories || []);
      if (data.forgotten && data.forgotten.length) status.append(undoButton());
    } else if (name === "error") {
      status.textContent = data.error.message;
    }
  }
}

async function* events(response) { // server-sent events from a fetch body
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) yield [name, JSON.parse(data)];
    }
  }
}

function showMemories(view, memories) {
  const list = view.querySelector(".memories ul");
  list.replaceChildren(...memories.map((m) => {
    const item = document.createElement("li");
    item.textContent = `${m.day} · ${m.path}:${m.line_start}-${m.line_end} · ${m.speaker}: ${m.text}` + (m.fact ? ` — found by the fact: ${m.fact.text}` : "");
    return item;
  }));
  view.querySelector(".memories summary").textContent = `memories (${memories.length})`;
}

// The facts an answer used: the asker's standing ones (in every circuit's prompt) and those that found a memory.
function showFacts(view, standing, memories) {
  const used = [...standing.map((f) => ["about you", f]), ...memories.filter((m) => m.fact).map((m) => ["found a memory", m.fact])];
  const list = view.querySelector(".facts ul");
  list.replaceChildren(...used.map(([why, f]) => {
    const item = document.createElement("li");
    item.textContent = `${f.text} (${f.kind}, ${f.date || "undated"}; ${why})`;
    return item;
  }));
  view.querySelector(".facts summary").textContent = `facts (${used.length})`;
  view.querySelector(".facts").hidden = used.length === 0;
}

function undoButton() {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "undo";
  button.textContent = "되돌리기 Undo";
  button.addEventListener("click", async () => {
    const body = await undoForget();
    button.replaceWith(document.createTextNode(body ? ` brought back: ${body.restored.map((f) => f.text).join("; ")}` : " could not undo"));
  });
  return button;
}

// ---- conversations to come back to -------------------------------------------------

async function loadConversations() { // the owner's (everyone's) or a keyed user's own; a guest has no list
  const params = new URLSearchParams({ limit: 100 });
  if (userInput.value.trim()) params.set("user", userInput.value.trim());
  const response = await fetch(`${BASE}/api/conversations?${params}`, { headers: headers() }).catch(() => null);
  const body = response ? await response.json().catch(() => ({})) : {};
  $("conversations").hidden = !(response && response.ok);
  if (!response || !response.ok) return;
  $("conversations-status").textContent = body.total ? "" : "아직 대화가 없어요. No conversations yet.";
  $("conversation-list").replaceChildren(...body.conversations.map((c) => {
    const item = document.createElement("li");
    item.dataset.id = c.id;
    item.dataset.user = c.user;
    const open = document.createElement("button");
    open.type = "button";
    const when = new Date(c.last).toLocaleString();
    open.textContent = c.title || "(untitled)";
    const about = document.createElement("small");
    about.textContent = `${body.user === null ? `${c.user} · ` : ""}${when} · ${c.exchanges} ${c.exchanges === 1 ? "exchange" : "exchanges"}`;
    open.append(document.createElement("br"), about);
    open.addEventListener("click", () => openConversation(c.id, c.user));
    item.append(open);
    return item;
  }));
  enter(conversation);
}

// Its exchanges read back from memory/, then the next message goes on with it (as its user:
// the owner reading minji's conversation talks in it as minji).
async function openConversation(id, user) {
  const params = new URLSearchParams();
  if (user && user !== "origin" && user !== "guest") {
    if (userInput.value.trim() !== user) userInput.value = user;
    sessionStorage.setItem("echo-user", user);
    params.set("user", user);
  } else if (userInput.value.trim()) {
    params.set("user", userInput.value.trim());
  }
  const response = await fetch(`${BASE}/api/conversations/${encodeURIComponent(id)}?${params}`, { headers: headers() }).catch(() => null);
  if (!response || !response.ok) {
    if (response && response.status === 404) enter(null); // gone, or not this tab's user's
    return;
  }
  const body = await response.json();
  $("log").replaceChildren();
  for (const exchange of body.exchanges) {
    const view = exchangeView(exchange.prompt);
    showMarkdown(view.querySelector(".reply"), exchange.reply);
    view.querySelector(".status").textContent = "";
    view.querySelector(".facts").hidden = true;
    view.querySelector(".memories").hidden = true;
  }
  enter(id);
}

for (const input of [tokenInput, userInput]) input.addEventListener("change", loadConversations);
if (conversation) openConversation(conversation, null);
loadConversations();

// ---- insights ----------------------------------------------------------------------

$("show-chat").addEventListener("click", () => switchTo("chat"));
$("show-insights").addEventListener("click", () => switchTo("insights"));
$("show-facts").addEventListener("click", () => switchTo("facts"));

function switchTo(view) {
  for (const name of ["chat", "insights", "facts"]) {
    $(`${name}-view`).hidden = view !== name;
    $(`show-${name}`).classList.toggle("active", view === name);
  }
  if (view === "insights") loadInsights();
  if (view === "facts") loadFacts();
}

// ---- what Echo knows ---------------------------------------------------------------

function factsQuery(extra = {}) { // a user sees their own (name + key); the owner, everyone's or the named user's
  const params = new URLSearchParams(extra);
  if (userInput.value.trim()) params.set("user", userInput.value.trim());
  return params.toString();
}

$("facts-search").addEventListener("submit", (event) => { event.preventDefault(); loadFacts(); });
$("facts-undo").addEventListener("click", async () => { await undoForget(); loadFacts(); });

async function undoForget() {
  const response = await fetch(`${BASE}/api/memory/facts/undo?${factsQuery()}`, { method: "POST", headers: headers() });
  return response.ok ? response.json() : null;
}

async function loadFacts() {
  const status = $("facts-status");
  status.textContent = "loading…";
  const response = await fetch(`${BASE}/api/memory/facts?${factsQuery({ q: $("facts-q").value, limit: 200 })}`, { headers: headers() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    status.textContent = body.error ? body.error.message : `HTTP ${response.status}`;
    $("facts-list").replaceChildren();
    return;
  }
  status.textContent = `${body.total} ${body.total === 1 ? "fact" : "facts"}` + (body.total > body.facts.length ? ` (${body.facts.length} shown)` : "");
  $("facts-list").replaceChildren(...body.facts.map((f) => {
    const item = document.createElement("li");
    item.className = "fact";
    item.dataset.id = f.id;
    const text = document.createElement("span");
    const cite = f.cites[0];
    text.textContent = `${f.text} — ${f.about}, ${f.kind}, ${f.date || "undated"} (${cite.path}:${cite.line_start}-${cite.line_end})` +
      (f.stale ? " [its lines changed]" : "") + (f.superseded_by ? " [replaced by a newer fact]" : "");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete";
    remove.textContent = "삭제 Delete";
    remove.addEventListener("click", async () => {
      const answer = await fetch(`${BASE}/api/memory/facts/${encodeURIComponent(f.id)}?${factsQuery()}`, { method: "DELETE", headers: headers() });
      if (answer.ok) item.remove();
      else status.textContent = (await answer.json().catch(() => ({}))).error?.message || `HTTP ${answer.status}`;
    });
    item.append(text, " ", remove);
    return item;
  }));
}

async function loadInsights() {
  const status = $("insights-status");
  status.textContent = "loading…";
  const response = await fetch(`${BASE}/api/insights`, { headers: headers() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    status.textContent = body.error ? body.error.message : `HTTP ${response.status}`;
    return;
  }
  status.textContent = "";
  $("insights-summary").textContent =
    `${body.parts} parts, ${body.lines} lines, ${body.turns} turns, ${body.first_day} – ${body.last_day}` +
    (body.skipped.length ? `, ${body.skipped.length} parts skipped` : "");
  const days = Object.entries(body.by_day);
  drawBars($("lines-chart"), days.map(([day]) => day.slice(3)), days.map(([, d]) => d.lines));
  const feelings = Object.entries(body.emotions);
  $("emotions").replaceChildren(...(feelings.length ? feelings : [["no feeling words found yet", ""]]).map(([name, count]) => {
    const item = document.createElement("li");
    item.textContent = count === "" ? name : `${name}: ${count}`;
    return item;
  }));
}

function drawBars(canvas, labels, values) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const max = Math.max(1, ...values);
  const step = width / Math.max(1, values.length);
  ctx.font = "10px sans-serif";
  values.forEach((value, i) => {
    const h = (height - 30) * (value / max);
    ctx.fillStyle = "#4a7bd0";
    ctx.fillRect(i * step + 2, height - 20 - h, Math.max(2, step - 4), h);
    ctx.fillStyle = "#333";
    if (values.length <= 40 || i % 2 === 0) ctx.fillText(labels[i], i * step + 2, height - 6);
  });
  canvas.dataset.bars = String(values.length); // for tests and screen readers: what was drawn
  canvas.dataset.max = String(max);
}
