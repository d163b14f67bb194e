// The studio's fetch wrapper: JSON in and out, and one readable line for every failure.
// A 4xx/5xx body is {"detail": "<one line>"} or, for a recipe field, {"error": {"field", "message"}};
// both become an ApiError whose .message is that line (and .field the field it names, if any).
// Every request goes through send(): a request that is not a GET carries `X-Studio: 1`, which the studio asks of
// every state-changing request (a page elsewhere cannot send that header without the studio's consent: CSRF).

export class ApiError extends Error {
  constructor(message, { status = 0, field = null, body = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.field = field;
    this.body = body;
  }
}

/** A run id ("0/sst2-demo") inside an API path: each segment escaped, the slashes kept. */
export function idPath(id) {
  return String(id).split("/").map(encodeURIComponent).join("/");
}

/** The one line a failed response carries. */
export function errorText(body, status, statusText = "") {
  if (body && typeof body === "object") {
    if (body.error && typeof body.error === "object" && body.error.message) return String(body.error.message);
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      // FastAPI's own request validation: [{loc, msg}, ...]
      return body.detail
        .map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`.replace(/^: /, ""))
        .join("; ");
    }
    if (body.detail && typeof body.detail === "object" && body.detail.message) return String(body.detail.message);
    if (typeof body.message === "string") return body.message;
  }
  if (typeof body === "string" && body.trim()) return body.trim().split("\n")[0].slice(0, 300);
  return `${status} ${statusText}`.trim() || "the studio did not answer";
}

async function readBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The header every state-changing request carries (the studio refuses one without it). */
const STUDIO_HEADER = { "X-Studio": "1" };

/** The failure of a response that is not ok, as an ApiError. */
async function failure(response) {
  const data = await readBody(response);
  const field = data && data.error && typeof data.error === "object" ? data.error.field || null : null;
  return new ApiError(errorText(data, response.status, response.statusText), { status: response.status, field, body: data });
}

/**
 * The studio's one fetch: `body` (an object) sent as JSON, X-Studio on anything but GET/HEAD, a network failure
 * as an ApiError. Resolves to the Response once it is ok; rejects with an ApiError otherwise.
 */
async function send(path, { method, body, signal, headers, accept = "application/json" } = {}) {
  const verb = (method || (body === undefined ? "GET" : "POST")).toUpperCase();
  const init = { method: verb, signal, headers: { Accept: accept, ...headers } };
  if (verb !== "GET" && verb !== "HEAD") Object.assign(init.headers, STUDIO_HEADER);
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError("the studio cannot be reached (is it still running?)", { status: 0 });
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/**
 * fetch + JSON. `body` (an object) is sent as JSON. Resolves to the parsed body; rejects with an ApiError.
 * Options: method, body, signal, headers.
 */
export async function api(path, options = {}) {
  return readBody(await send(path, options));
}

export const get = (path, opts) => api(path, { ...opts, method: "GET" });
export const post = (path, body = {}, opts) => api(path, { ...opts, method: "POST", body });
export const del = (path, opts) => api(path, { ...opts, method: "DELETE" });

/** The message of any error, for a person. */
export function messageOf(err) {
  if (!err) return "";
  if (err instanceof ApiError) return err.message;
  if (err.name === "AbortError") return "cancelled";
  return err.message || String(err);
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new DOMException("aborted", "AbortError"));
    }, { once: true });
  });

/**
 * Polls GET /api/jobs/{id} every `every` ms until its status is no longer "running"; `onUpdate(job)` sees each
 * answer. Resolves to the last job. A failed poll is retried (a busy server), up to `retries` times in a row.
 */
export async function pollJob(jobId, { onUpdate, every = 1000, signal, retries = 5 } = {}) {
  let failures = 0;
  for (;;) {
    let job;
    try {
      job = await get(`/api/jobs/${encodeURIComponent(jobId)}`, { signal });
      failures = 0;
    } catch (err) {
      if (err.name === "AbortError" || ++failures > retries || (err.status >= 400 && err.status < 500)) throw err;
      await sleep(every, signal);
      continue;
    }
    onUpdate?.(job);
    if (job.status !== "running") return job;
    await sleep(every, signal);
  }
}

/**
 * POST that answers with server-sent events (fetch + a stream reader: EventSource cannot POST).
 * Calls onEvent(name, data) for each event; `data` is parsed JSON when it is JSON. Resolves when the stream ends.
 */
export async function postEvents(path, body, { onEvent, signal } = {}) {
  const response = await send(path, { method: "POST", body, signal, accept: "text/event-stream" });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "message";
  let data = [];
  const dispatch = () => {
    if (data.length) {
      const text = data.join("\n");
      let value = text;
      try {
        value = JSON.parse(text);
      } catch {
        /* plain text data */
      }
      onEvent?.(event, value);
    }
    event = "message";
    data = [];
  };
  const line = (raw) => {
    const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (text === "") return dispatch();
    if (text.startsWith(":")) return; // a comment (keep-alive)
    const colon = text.indexOf(":");
    const name = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event = value || "message";
    else if (name === "data") data.push(value);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      line(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
    }
  }
  buffer += decoder.decode();
  if (buffer) line(buffer);
  dispatch();
}
