// Chat page: pick a chat-capable run (or a base model) and talk to it; replies stream token by token.
// POST /api/chat answers with server-sent events (token, done, error), read with fetch + a stream reader.
// Ids for tests:
//   #chat-model (option value = model id; ?model=ID preselects), #chat-max-tokens, #chat-input, #chat-send,
//   #chat-stop (while a reply streams), #chat-reset, #chat-error, #chat-total
//   #chat-log                the conversation: .message.user and .message.assistant (.streaming while tokens
//                            arrive; data-done="true" once done); each reply's .text, and .meta with its seconds
//                            and g CO2eq (.co2)
import { get, messageOf, postEvents } from "./api.js";
import { $, esc, grams, isNumber, param } from "./format.js";

const modelSelect = $("#chat-model");
const input = $("#chat-input");
const sendButton = $("#chat-send");
const stopButton = $("#chat-stop");
const log = $("#chat-log");
const state = { messages: [], controller: null, grams: 0, seconds: 0, replies: 0 };

function showError(message) {
  const box = $("#chat-error");
  box.textContent = message;
  box.hidden = !message;
}

function bubble(role, text) {
  $("#chat-empty").hidden = true;
  const node = document.createElement("div");
  node.className = `message ${role}`;
  node.innerHTML = '<span class="text"></span>';
  node.querySelector(".text").textContent = text;
  log.append(node);
  log.scrollTop = log.scrollHeight;
  return node;
}

function renderTotal() {
  $("#chat-total").innerHTML = state.replies
    ? `${state.replies} repl${state.replies === 1 ? "y" : "ies"}: ${esc(state.seconds.toFixed(1))} s${state.grams ? `, <span class="co2">${esc(grams(state.grams))} g CO2eq</span>` : ""}`
    : "";
}

function setStreaming(on) {
  sendButton.disabled = on;
  if (on) sendButton.setAttribute("aria-busy", "true");
  else sendButton.removeAttribute("aria-busy");
  stopButton.hidden = !on;
  modelSelect.disabled = on;
}

async function send() {
  const text = input.value.trim();
  const model = modelSelect.value;
  if (!text || state.controller) return;
  if (!model) {
    showError("Choose a model first.");
    return;
  }
  showError("");
  input.value = "";
  state.messages.push({ role: "user", content: text });
  bubble("user", text);
  const reply = bubble("assistant", "");
  reply.classList.add("streaming");
  const textNode = reply.querySelector(".text");
  let received = "";
  const controller = new AbortController();
  state.controller = controller;
  setStreaming(true);
  const body = { model, messages: state.messages.slice() };
  const maxTokens = parseInt($("#chat-max-tokens").value, 10);
  if (Number.isFinite(maxTokens) && maxTokens > 0) body.max_new_tokens = maxTokens;
  let done = null;
  let failure = null;
  try {
    await postEvents("/api/chat", body, {
      signal: controller.signal,
      onEvent: (name, data) => {
        if (name === "token") {
          received += typeof data === "string" ? data : data?.text ?? "";
          textNode.textContent = received;
          log.scrollTop = log.scrollHeight;
        } else if (name === "done") {
          done = typeof data === "object" && data ? data : { reply: received };
        } else if (name === "error") {
          failure = (data && data.detail) || (typeof data === "string" ? data : "the model failed to answer");
        }
      },
    });
  } catch (err) {
    failure = err.name === "AbortError" ? null : messageOf(err);
    if (err.name === "AbortError") done = { reply: received, stopped: true };
  } finally {
    state.controller = null;
    setStreaming(false);
    reply.classList.remove("streaming");
  }
  if (failure || !done) {
    reply.classList.add("error");
    reply.classList.remove("assistant");
    reply.innerHTML = `<span class="text bad-text"></span>`;
    reply.querySelector(".text").textContent = failure || "the reply ended without finishing";
    state.messages.pop(); // the question stays on screen; it is not sent again as history
    input.value = text;
    return;
  }
  const final = typeof done.reply === "string" && done.reply ? done.reply : received;
  textNode.textContent = final;
  state.messages.push({ role: "assistant", content: final });
  reply.dataset.done = "true";
  const parts = [];
  if (isNumber(done.seconds)) {
    parts.push(`${done.seconds.toFixed(1)} s`);
    state.seconds += done.seconds;
  }
  if (isNumber(done.emissions_g)) {
    parts.push(`<span class="co2">${esc(grams(done.emissions_g))} g CO2eq</span>`);
    state.grams += done.emissions_g;
  }
  if (done.stopped) parts.push("stopped");
  state.replies += 1;
  if (parts.length) {
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.innerHTML = parts.join(" · ");
    reply.append(meta);
  }
  renderTotal();
  log.scrollTop = log.scrollHeight;
  input.focus();
}

function reset() {
  state.controller?.abort();
  state.messages = [];
  state.grams = 0;
  state.seconds = 0;
  state.replies = 0;
  for (const node of log.querySelectorAll(".message")) node.remove();
  $("#chat-empty").hidden = false;
  renderTotal();
  showError("");
  input.focus();
}

async function init() {
  let models;
  try {
    models = (await get("/api/chat/models")).models || [];
  } catch (err) {
    modelSelect.innerHTML = '<option value="">no models</option>';
    showError(`Cannot list the chat models: ${messageOf(err)}`);
    return;
  }
  if (!models.length) {
    modelSelect.innerHTML = '<option value="">no chat model</option>';
    showError("No model to chat with: finish an SFT or preference run (a model with a chat template) first.");
    sendButton.disabled = true;
    return;
  }
  const wanted = param("model");
  const group = (kind, label) => {
    const items = models.filter((m) => (kind === "run" ? m.kind !== "base" : m.kind === "base"));
    return items.length
      ? `<optgroup label="${label}">${items.map((m) => `<option value="${esc(m.id)}"${m.id === wanted ? " selected" : ""}>${esc(m.label || m.id)}</option>`).join("")}</optgroup>`
      : "";
  };
  modelSelect.innerHTML = group("run", "Runs") + group("base", "Base models");
  if (wanted && !models.some((m) => m.id === wanted)) showError(`${wanted} cannot chat (not a finished run with a chat template); choose another model.`);
  input.focus();
}

$("#chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
stopButton.addEventListener("click", () => state.controller?.abort());
$("#chat-reset").addEventListener("click", reset);
modelSelect.addEventListener("change", () => {
  const url = new URL(location.href);
  url.searchParams.set("model", modelSelect.value);
  history.replaceState(null, "", url);
});

init();
