// The Playground: assistants, threads and streamed runs (or responses) through the
// server's public API, as any client uses it. What the model or the code produced is put
// in the page as text nodes only (markdown.js builds its nodes the same way).

import { highlight, renderMarkdown } from "/playground/markdown.js";

const $ = (id) => document.getElementById(id);
const KEY = "interp.key";
const RECENT = "interp.threads";

const state = {
  key: sessionStorage.getItem(KEY) || "",
  models: [],
  assistants: [],
  assistant: null,
  thread: null,
  previousResponse: null,
  run: null,
  controller: null,
  produced: new Map(),
};

// The API.

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, { method = "GET", body, form, stream = false } = {}) {
  const headers = {};
  if (state.key) headers.authorization = `Bearer ${state.key}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(`/v1${path}`, {
    method, headers, body: payload, signal: stream ? state.controller?.signal : undefined,
  });
  if (!response.ok) {
    const found = await response.json().catch(() => ({}));
    const error = new ApiError(response.status, found.error?.message || response.statusText);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }
  return stream ? response : response.json();
}

async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      let data = "";
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trimStart();
      }
      if (data === "[DONE]") return;
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

async function fileBlob(path) {
  const headers = state.key ? { authorization: `Bearer ${state.key}` } : {};
  const response = await fetch(path, { headers });
  if (!response.ok) throw new ApiError(response.status, `could not fetch ${path}`);
  return response.blob();
}

// Keys.

function askForKey(message) {
  $("app").hidden = true;
  $("key-form").hidden = false;
  $("key-error").textContent = state.key ? message : "";
  $("key-input").focus();
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.key = $("key-input").value.trim();
  sessionStorage.setItem(KEY, state.key);
  await start();
});

// Small DOM helpers.

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function setStatus(text) { $("status").textContent = text; }

function showError(error) {
  setStatus(`Error: ${error.message || error}`);
}

function bytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 ** 2) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 ** 2).toFixed(1)} MiB`;
}

function followAddress() {
  const params = new URLSearchParams();
  if (state.assistant) params.set("assistant", state.assistant.id);
  if (state.thread) params.set("thread", state.thread);
  const query = params.toString();
  history.replaceState(null, "", query ? `/?${query}` : "/");
}

// Assistants.

async function loadAssistants() {
  const page = await api("/assistants?limit=100");
  state.assistants = page.data;
  const list = $("assistants");
  list.replaceChildren();
  for (const assistant of state.assistants) {
    const item = el("li");
    const open = el("button", assistant.name || assistant.id, "link");
    open.type = "button";
    open.addEventListener("click", () => selectAssistant(assistant.id));
    if (state.assistant?.id === assistant.id) open.setAttribute("aria-current", "true");
    const edit = el("button", "Edit", "small");
    edit.type = "button";
    edit.setAttribute("aria-label", `Edit ${assistant.name || assistant.id}`);
    edit.addEventListener("click", () => editAssistant(assistant));
    item.append(open, edit);
    list.append(item);
  }
}

function editAssistant(assistant) {
  const form = $("assistant-form");
  form.hidden = false;
  form.dataset.id = assistant?.id || "";
  $("assistant-form-title").textContent = assistant ? "Edit assistant" : "New assistant";
  $("a-name").value = assistant?.name || "";
  $("a-instructions").value = assistant?.instructions || "";
  const select = $("a-model");
  select.replaceChildren(...state.models.map((id) => el("option", id)));
  if (assistant?.model) select.value = assistant.model;
  const tools = assistant?.tools || [{ type: "code_interpreter" }];
  $("a-code").checked = tools.some((t) => t.type === "code_interpreter");
  $("a-search").checked = tools.some((t) => t.type === "file_search");
  const functions = tools.filter((t) => t.type === "function").map((t) => t.function);
  $("a-functions").value = functions.length ? JSON.stringify(functions, null, 2) : "";
  $("delete-assistant").hidden = !assistant;
  $("assistant-error").textContent = "";
  $("a-name").focus();
}

$("new-assistant").addEventListener("click", () => editAssistant(null));
$("cancel-assistant").addEventListener("click", () => { $("assistant-form").hidden = true; });

$("assistant-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const tools = [];
  if ($("a-code").checked) tools.push({ type: "code_interpreter" });
  if ($("a-search").checked) tools.push({ type: "file_search" });
  const text = $("a-functions").value.trim();
  if (text) {
    let functions;
    try {
      functions = JSON.parse(text);
      if (!Array.isArray(functions)) throw new Error("give a list of function definitions");
    } catch (error) {
      $("assistant-error").textContent = `Functions: ${error.message}`;
      return;
    }
    for (const fn of functions) tools.push({ type: "function", function: fn });
  }
  const body = {
    name: $("a-name").value || null,
    model: $("a-model").value,
    instructions: $("a-instructions").value || null,
    tools,
  };
  const id = $("assistant-form").dataset.id;
  try {
    const saved = await api(id ? `/assistants/${id}` : "/assistants", { method: "POST", body });
    $("assistant-form").hidden = true;
    await loadAssistants();
    await selectAssistant(saved.id);
  } catch (error) {
    $("assistant-error").textContent = error.message;
  }
});

$("delete-assistant").addEventListener("click", async () => {
  const id = $("assistant-form").dataset.id;
  await api(`/assistants/${id}`, { method: "DELETE" });
  $("assistant-form").hidden = true;
  if (state.assistant?.id === id) { state.assistant = null; newThread(); }
  await loadAssistants();
});

async function selectAssistant(id, thread = null) {
  state.assistant = state.assistants.find((a) => a.id === id) || await api(`/assistants/${id}`);
  await loadAssistants();
  renderRecent();
  if (thread) await openThread(thread);
  else newThread();
}

// Threads.

function recent() {
  try { return JSON.parse(localStorage.getItem(RECENT) || "[]"); } catch { return []; }
}

function remember(threadId, title) {
  const kept = recent().filter((t) => t.id !== threadId);
  kept.unshift({ id: threadId, assistant: state.assistant?.id, title: title.slice(0, 60) });
  localStorage.setItem(RECENT, JSON.stringify(kept.slice(0, 30)));
  renderRecent();
}

function renderRecent() {
  const list = $("threads");
  list.replaceChildren();
  for (const thread of recent().filter((t) => t.assistant === state.assistant?.id)) {
    const item = el("li");
    const open = el("button", thread.title || thread.id, "link");
    open.type = "button";
    open.addEventListener("click", () => openThread(thread.id));
    item.append(open);
    list.append(item);
  }
}

function newThread() {
  state.thread = null;
  state.previousResponse = null;
  state.produced = new Map();
  $("conversation").replaceChildren();
  $("produced").replaceChildren();
  $("run-info").textContent = "";
  setStatus(state.assistant ? `New thread with ${state.assistant.name || state.assistant.id}` : "Choose or make an assistant");
  followAddress();
}

$("new-thread").addEventListener("click", newThread);

async function openThread(threadId) {
  newThread();
  state.thread = threadId;
  followAddress();
  // Its messages, and each run's steps in their order (its code calls, the messages it
  // wrote), a run after the messages made before it.
  const page = await api(`/threads/${threadId}/messages?order=asc&limit=100`);
  const runs = await api(`/threads/${threadId}/runs?order=asc&limit=100`);
  const byId = new Map(page.data.map((message) => [message.id, message]));
  const shown = page.data
    .filter((message) => !message.run_id)
    .map((message) => ({ at: message.created_at, order: 0, message }));
  for (const run of runs.data) shown.push({ at: run.created_at, order: 1, run });
  shown.sort((a, b) => a.at - b.at || a.order - b.order);
  const view = new RunView();
  for (const { message, run } of shown) {
    if (message) { renderMessage(messageBox(message.role), message); continue; }
    const steps = await api(`/threads/${threadId}/runs/${run.id}/steps?order=asc&limit=100`);
    for (const step of steps.data) {
      const details = step.step_details;
      if (details.type === "tool_calls") {
        const tool_calls = details.tool_calls.map((call, index) => ({ index, ...call }));
        view.stepDelta({ id: step.id, delta: { step_details: { tool_calls } } });
      } else if (byId.has(details.message_creation.message_id)) {
        renderMessage(messageBox("assistant"), byId.get(details.message_creation.message_id));
      }
    }
  }
  setStatus("");
}

// The conversation.

function messageBox(role) {
  const box = el("article", null, `message ${role}`);
  box.append(el("h3", role === "user" ? "You" : "Assistant", "who"));
  const body = el("div", null, "body");
  box.append(body);
  $("conversation").append(box);
  return body;
}

function renderMessage(body, message) {
  body.replaceChildren();
  for (const part of message.content) {
    if (part.type === "text") body.append(renderText(part.text.value, part.text.annotations));
    else if (part.type === "image_file") body.append(image(part.image_file.file_id));
  }
  for (const part of message.content) {
    for (const note of part.text?.annotations || []) {
      if (note.type === "file_path") addProduced(note.file_path.file_id);
    }
    if (part.type === "image_file") addProduced(part.image_file.file_id);
  }
}

function renderText(text, annotations = []) {
  const paths = new Map();
  for (const note of annotations) {
    if (note.type === "file_path") paths.set(note.text, note.file_path.file_id);
  }
  return renderMarkdown(text, {
    link: (href, label) => {
      const fileId = paths.get(href);
      return fileId ? downloadButton(fileId, label || href) : null;
    },
  });
}

function image(fileId, path = `/v1/files/${fileId}/content`) {
  const img = el("img", null, "output");
  img.alt = "an image the code drew";
  fileBlob(path).then((blob) => { img.src = URL.createObjectURL(blob); }, showError);
  return img;
}

function downloadButton(fileId, label, path = `/v1/files/${fileId}/content`) {
  const button = el("button", label, "download");
  button.type = "button";
  button.addEventListener("click", async () => {
    const meta = fileId ? await api(`/files/${fileId}`).catch(() => null) : null;
    const blob = await fileBlob(path);
    const a = el("a");
    a.href = URL.createObjectURL(blob);
    a.download = (meta?.filename || label).split("/").pop();
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  });
  return button;
}

async function addProduced(fileId) {
  if (state.produced.has(fileId)) return;
  state.produced.set(fileId, null);
  const meta = await api(`/files/${fileId}`).catch(() => null);
  if (!meta) return;
  const item = el("li");
  item.append(downloadButton(fileId, meta.filename.split("/").pop()), el("span", ` ${bytes(meta.bytes)}`, "size"));
  $("produced").append(item);
}

// A streamed run, as its events come.

// A tool call in the conversation: its title, its code, its logs, its other outputs.
function callBox(title) {
  const box = el("section", null, "call");
  const code = el("code");
  const pre = el("pre");
  pre.append(code);
  const logs = el("pre", null, "logs");
  const outputs = el("div", null, "outputs");
  box.append(el("h4", title, "who"), pre, logs, outputs);
  $("conversation").append(box);
  return { box, code, logs, outputs, source: "" };
}

class RunView {
  constructor() {
    this.calls = new Map();
    this.messages = new Map();
  }

  call(stepId, delta) {
    const key = `${stepId}:${delta.index}`;
    let found = this.calls.get(key);
    if (!found) {
      found = callBox(delta.type === "function" ? `Function ${delta.function?.name || ""}` : delta.type === "file_search" ? "File search" : "Code");
      this.calls.set(key, found);
    }
    return found;
  }

  stepDelta(data) {
    for (const delta of data.delta.step_details?.tool_calls || []) {
      const call = this.call(data.id, delta);
      const code = delta.code_interpreter;
      if (code?.input) {
        call.source += code.input;
        call.code.replaceChildren();
        highlight(call.code, call.source);
      }
      for (const output of code?.outputs || []) {
        if (output.type === "logs") call.logs.append(document.createTextNode(output.logs));
        else if (output.type === "image") {
          call.outputs.append(image(output.image.file_id));
          addProduced(output.image.file_id);
        }
      }
      if (delta.type === "file_search") {
        for (const result of delta.file_search?.results || []) {
          call.logs.append(document.createTextNode(`${result.file_name} (${result.score.toFixed(2)})\n`));
        }
      }
    }
  }

  message(data) {
    let found = this.messages.get(data.id);
    if (!found) {
      found = { body: messageBox("assistant"), text: "" };
      this.messages.set(data.id, found);
    }
    return found;
  }

  messageDelta(data) {
    const found = this.message(data);
    for (const part of data.delta.content || []) {
      if (part.type === "text") found.text += part.text.value || "";
      else if (part.type === "image_file") found.body.append(image(part.image_file.file_id));
    }
    const text = found.body.querySelector(":scope > .text") || el("div", null, "text");
    text.replaceChildren(renderMarkdown(found.text));
    found.body.append(text);
  }
}

async function follow(response) {
  const view = new RunView();
  for await (const { event, data } of events(response)) {
    if (event === "thread.run.created") { state.run = data; $("stop").hidden = false; }
    else if (event === "thread.run.step.delta") view.stepDelta(data);
    else if (event === "thread.message.created") view.message(data);
    else if (event === "thread.message.delta") view.messageDelta(data);
    else if (event === "thread.message.completed") renderMessage(view.message(data).body, data);
    else if (event === "thread.run.requires_action") { state.run = data; askForOutputs(data); }
    else if (event.startsWith("thread.run.") && ["completed", "failed", "cancelled", "expired", "incomplete"].includes(event.slice(11))) {
      state.run = data;
      await ended(data);
    } else if (event === "error") setStatus(`Error: ${data.message}`);
  }
}

async function ended(run) {
  $("stop").hidden = true;
  const reason = run.last_error?.message || run.incomplete_details?.reason || "";
  setStatus(`Run ${run.status}${reason ? `: ${reason}` : ""}`);
  const steps = await api(`/threads/${run.thread_id}/runs/${run.id}/steps?order=asc`).catch(() => ({ data: [] }));
  const lines = [`run ${run.id}: ${run.status}`];
  if (run.usage) lines.push(`tokens: ${run.usage.prompt_tokens} in, ${run.usage.completion_tokens} out, ${run.usage.total_tokens} in all`);
  for (const step of steps.data) lines.push(`step ${step.id}: ${step.step_details.type}, ${step.status}`);
  $("run-info").textContent = lines.join("\n");
}

function askForOutputs(run) {
  const form = $("tool-form");
  const calls = $("tool-calls");
  calls.replaceChildren();
  for (const call of run.required_action.submit_tool_outputs.tool_calls) {
    const box = el("div", null, "tool-call");
    box.append(el("p", `${call.function.name}(${call.function.arguments})`, "mono"));
    const label = el("label", "Output ");
    const output = el("textarea");
    output.dataset.callId = call.id;
    output.required = true;
    label.append(output);
    box.append(label);
    calls.append(box);
  }
  form.hidden = false;
  calls.querySelector("textarea")?.focus();
  setStatus("The run waits for the function's output");
}

$("tool-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const outputs = [...$("tool-calls").querySelectorAll("textarea")].map((t) => ({ tool_call_id: t.dataset.callId, output: t.value }));
  $("tool-form").hidden = true;
  const run = state.run;
  try {
    const response = await api(`/threads/${run.thread_id}/runs/${run.id}/submit_tool_outputs`, {
      method: "POST", body: { tool_outputs: outputs, stream: true }, stream: true,
    });
    await follow(response);
  } catch (error) { showError(error); }
});

// Sending.

async function upload(purpose) {
  const ids = [];
  for (const file of $("attach").files) {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    ids.push((await api("/files", { method: "POST", form })).id);
  }
  $("attach").value = "";
  return ids;
}

async function sendToAssistant(text) {
  if (!state.assistant) throw new Error("choose or make an assistant first");
  const fileIds = await upload("assistants");
  if (!state.thread) {
    state.thread = (await api("/threads", { method: "POST", body: {} })).id;
    remember(state.thread, text);
    followAddress();
  }
  // Attached for the code, and for search when the assistant searches.
  const tools = [{ type: "code_interpreter" }];
  if (state.assistant.tools.some((t) => t.type === "file_search")) tools.push({ type: "file_search" });
  const attachments = fileIds.map((file_id) => ({ file_id, tools }));
  const message = await api(`/threads/${state.thread}/messages`, {
    method: "POST", body: { role: "user", content: text, attachments },
  });
  renderMessage(messageBox("user"), message);
  setStatus("Running…");
  const response = await api(`/threads/${state.thread}/runs`, {
    method: "POST", body: { assistant_id: state.assistant.id, stream: true }, stream: true,
  });
  await follow(response);
}

async function sendToResponses(text) {
  const fileIds = await upload("user_data");
  const user = messageBox("user");
  user.append(renderMarkdown(text));
  const tools = [{ type: "code_interpreter", container: { type: "auto", file_ids: fileIds } }];
  const body = {
    model: state.assistant?.model || state.models[0],
    instructions: state.assistant?.instructions || undefined,
    input: text, tools, stream: true, include: ["code_interpreter_call.outputs"],
    previous_response_id: state.previousResponse || undefined,
  };
  setStatus("Running…");
  $("stop").hidden = false;
  const response = await api("/responses", { method: "POST", body, stream: true });
  let answer = null;
  let said = "";
  const calls = new Map();
  for await (const { event, data } of events(response)) {
    if (event === "response.output_item.added" && data.item.type === "code_interpreter_call") {
      calls.set(data.item.id, callBox("Code"));
    } else if (event === "response.code_interpreter_call_code.delta") {
      const call = calls.get(data.item_id);
      call.source += data.delta;
      call.code.replaceChildren();
      highlight(call.code, call.source);
    } else if (event === "response.output_item.done" && data.item.type === "code_interpreter_call") {
      const call = calls.get(data.item.id);
      for (const output of data.item.outputs || []) {
        if (output.type === "logs") call.logs.append(document.createTextNode(output.logs));
        else if (output.type === "image") call.outputs.append(image(null, new URL(output.url).pathname));
      }
    } else if (event === "response.output_text.delta") {
      if (!answer) answer = messageBox("assistant");
      said += data.delta;
      answer.replaceChildren(renderMarkdown(said));
    } else if (event === "response.completed" || event === "response.failed" || event === "response.incomplete") {
      state.previousResponse = data.response.id;
      const usage = data.response.usage;
      $("run-info").textContent = `response ${data.response.id}: ${data.response.status}` + (usage ? `\ntokens: ${usage.input_tokens} in, ${usage.output_tokens} out` : "");
      setStatus(`Response ${data.response.status}`);
    } else if (event === "error") setStatus(`Error: ${data.message}`);
  }
  $("stop").hidden = true;
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  $("message").value = "";
  $("send").disabled = true;
  state.controller = new AbortController();
  try {
    if ($("mode-responses").checked) await sendToResponses(text);
    else await sendToAssistant(text);
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
  } finally {
    $("send").disabled = false;
    $("stop").hidden = true;
  }
});

$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("composer").requestSubmit();
});

$("stop").addEventListener("click", async () => {
  const run = state.run;
  if ($("mode-responses").checked || !run) { state.controller?.abort(); return; }
  await api(`/threads/${run.thread_id}/runs/${run.id}/cancel`, { method: "POST" }).catch(showError);
});

$("mode-responses").addEventListener("change", () => {
  newThread();
  $("threads-section").hidden = $("mode-responses").checked;
  setStatus($("mode-responses").checked ? "Responses API: each message continues the previous response" : "");
});

// Start.

async function start() {
  try {
    const models = await api("/models");
    state.models = models.data.map((m) => m.id);
  } catch (error) {
    if (error.status !== 401) showError(error);
    return;
  }
  $("key-form").hidden = true;
  $("app").hidden = false;
  await loadAssistants();
  const params = new URLSearchParams(location.search);
  const assistant = params.get("assistant");
  if (assistant) {
    try { await selectAssistant(assistant, params.get("thread")); } catch (error) { showError(error); }
  } else newThread();
}

start();
