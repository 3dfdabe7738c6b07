// Echo's chat page: plain JavaScript, no build step. Streams /api/ask (server-sent events
// over fetch), shows each circuit's draft in its own panel and the memories used, and draws
// the insights. The owner token (or a user's key) lives only in this tab's sessionStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("echo-token") || "";
tokenInput.addEventListener("input", () => sessionStorage.setItem("echo-token", tokenInput.value));
// A user name with the key the owner made for it (echo-server user-key) brings that user's memories.
const userInput = $("user");
userInput.value = sessionStorage.getItem("echo-user") || "";
userInput.addEventListener("input", () => sessionStorage.setItem("echo-user", userInput.value.trim()));

// The conversation this tab is in: Echo hands out its id with the first answer, and the next
// messages carry it, so Echo sees what was just said. "New conversation" forgets it.
let conversation = sessionStorage.getItem("echo-conversation");
$("new-conversation").addEventListener("click", () => {
  conversation = null;
  sessionStorage.removeItem("echo-conversation");
  $("log").replaceChildren();
  prompt.focus();
});

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

async function ask(text) {
  const view = $("exchange").content.firstElementChild.cloneNode(true);
  view.querySelector(".you").textContent = text;
  $("log").append(view);
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
    response = await fetch("/api/ask", { method: "POST", headers: headers(), body: JSON.stringify({ prompt: text, stream: true, ...(userInput.value.trim() ? { user: userInput.value.trim() } : {}), ...(conversation ? { conversation } : {}) }) });
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
    if (merge === "concat") reply.textContent = order.map((n) => drafts[n]).filter(Boolean).join("\n\n");
  };
  for await (const [name, data] of events(response)) {
    if (name === "start") {
      merge = data.merge;
      order = data.order || [];
      conversation = data.conversation;
      sessionStorage.setItem("echo-conversation", conversation);
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
      reply.textContent = data.reply;
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
  const response = await fetch(`/api/memory/facts/undo?${factsQuery()}`, { method: "POST", headers: headers() });
  return response.ok ? response.json() : null;
}

async function loadFacts() {
  const status = $("facts-status");
  status.textContent = "loading…";
  const response = await fetch(`/api/memory/facts?${factsQuery({ q: $("facts-q").value, limit: 200 })}`, { headers: headers() });
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
      const answer = await fetch(`/api/memory/facts/${encodeURIComponent(f.id)}?${factsQuery()}`, { method: "DELETE", headers: headers() });
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
  const response = await fetch("/api/insights", { headers: headers() });
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
