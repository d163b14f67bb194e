// Escaping and number formats shared by the pages. Everything that comes from a run, a recipe or the Hub goes
// through esc() before it meets innerHTML.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

export function esc(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

/** A tagged template that escapes every interpolated value, except those wrapped with raw(). */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    out += (value && value.__raw !== undefined ? value.__raw : Array.isArray(value) ? value.map((v) => (v && v.__raw !== undefined ? v.__raw : esc(v))).join("") : esc(value)) + strings[i + 1];
  });
  return out;
}

export const raw = (text) => ({ __raw: String(text) });

export const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

export const DASH = "–";

/** Grams CO2eq as the CLI writes them: 3 significant digits, whole grams from 100 g. */
export function grams(g) {
  if (!isNumber(g)) return DASH;
  if (Math.abs(g) >= 100) return Math.round(g).toLocaleString("en-US");
  if (g === 0) return "0";
  return trimZeros(g.toPrecision(3));
}

export function kwh(value) {
  if (!isNumber(value)) return DASH;
  if (value === 0) return "0";
  return trimZeros(value.toPrecision(3));
}

/** Seconds as the CLI writes them: "12.3 s", "2 min 10 s", "1 h 5 min". */
export function duration(seconds) {
  if (!isNumber(seconds)) return DASH;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  let minutes = Math.floor(Math.round(seconds) / 60);
  const secs = Math.round(seconds) % 60;
  if (minutes < 60) return `${minutes} min ${secs} s`;
  const hours = Math.floor(minutes / 60);
  minutes %= 60;
  return `${hours} h ${minutes} min`;
}

/** A metric or any measured value: up to 4 significant digits. */
export function num(value, digits = 4) {
  if (!isNumber(value)) return value === null || value === undefined ? DASH : String(value);
  if (value === 0) return "0";
  if (Number.isInteger(value) && Math.abs(value) < 1e7) return value.toLocaleString("en-US");
  const abs = Math.abs(value);
  if (abs >= 1e-3 && abs < 1e7) return trimZeros(value.toPrecision(digits));
  return value.toExponential(Math.max(0, digits - 2)).replace(/\.?0+e/, "e");
}

export function trimZeros(text) {
  if (text.includes("e")) return text;
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

/** A unix time (seconds) as a short local date and time. */
export function date(unix) {
  if (!isNumber(unix)) return DASH;
  const d = new Date(unix * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A unix time, short: "Dec 2, 18:34" (the year too when not this one). */
export function shortDate(unix) {
  if (!isNumber(unix)) return DASH;
  const d = new Date(unix * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const month = d.toLocaleString("en-US", { month: "short" });
  const year = d.getFullYear() === new Date().getFullYear() ? "" : ` ${d.getFullYear()}`;
  return `${month} ${d.getDate()}${year}, ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "3 min ago" style, for times within a few days; else the date. */
export function ago(unix) {
  if (!isNumber(unix)) return DASH;
  const s = Date.now() / 1000 - unix;
  if (s < 0 || s > 3 * 86400) return date(unix);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

const STATUS_CLASS = {
  running: "running",
  finished: "finished",
  "stopped on budget": "budget",
  stopped: "stopped",
  failed: "failed",
  done: "finished",
};

/** The status badge: <span class="status status-finished" data-status="finished">finished</span>. */
export function statusBadge(status) {
  const kind = STATUS_CLASS[status] || "unknown";
  return `<span class="status status-${kind}" data-status="${esc(status)}">${esc(status || "unknown")}</span>`;
}

export const FINAL_STATUSES = ["finished", "stopped on budget", "stopped", "failed"];

/**
 * HTML the server rendered (a model card) without what could run: scripts, frames, event handlers, javascript:
 * links. The card is the run's own README, shown as the Hub shows it.
 */
export function cleanHtml(text) {
  const template = document.createElement("template");
  template.innerHTML = String(text ?? "");
  for (const node of template.content.querySelectorAll("script, iframe, object, embed, frame, frameset, base, meta, link, style, form")) node.remove();
  for (const node of template.content.querySelectorAll("*")) {
    for (const attr of [...node.attributes]) {
      const name = attr.name.toLowerCase();
      const value = attr.value.trim().toLowerCase();
      if (name.startsWith("on") || ((name === "href" || name === "src" || name === "xlink:href" || name === "action" || name === "formaction") && /^(javascript|vbscript|data:text\/html)/.test(value.replace(/\s+/g, "")))) {
        node.removeAttribute(attr.name);
      }
    }
    if (node.tagName === "A" && node.getAttribute("href")?.startsWith("http")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  }
  return template.innerHTML;
}

/** The query string's value, or null. */
export const param = (name) => new URLSearchParams(location.search).get(name);

/** An id inside a query string: escaped, its slashes kept (`/run?id=0/sst2-demo`). */
export const qid = (id) => encodeURIComponent(id).replace(/%2F/gi, "/");

/** A run page address. */
export const runHref = (id) => `/run?id=${qid(id)}`;

/** $("#id") shorthand; throws early when a page lacks an element its module needs. */
export function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

/** Disables a button and shows a spinner on it while `work` runs. */
export async function busy(button, work) {
  const buttons = Array.isArray(button) ? button : [button];
  buttons.forEach((b) => {
    b.disabled = true;
  });
  buttons[0].setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    buttons[0].removeAttribute("aria-busy");
    buttons.forEach((b) => {
      b.disabled = false;
    });
  }
}
