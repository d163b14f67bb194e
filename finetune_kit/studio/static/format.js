// Escaping and number formats shared by the pages. Everything that comes from a run, a recipe or the Hub goes
// through esc() before it meets innerHTML.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

export function esc(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

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

// ---- the model card ---------------------------------------------------------------------------------------
// The server renders the card with raw HTML escaped and unsafe links refused; the page keeps its own guard all the
// same. The HTML is parsed inside a <template> (inert: nothing runs, nothing loads), then rebuilt node by node into
// fresh elements: only the tags and attributes below, every other attribute dropped. The rebuilt nodes are
// appended as they are, never serialised and parsed again (which would leave room for mutation XSS).

const CARD_TAGS = new Set([
  "h1", "h2", "h3", "h4", "h5", "h6", "p", "a", "ul", "ol", "li",
  "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption",
  "code", "pre", "em", "strong", "img", "blockquote", "hr", "br",
]);
/** Elements whose content is not text for a person: dropped with everything in them. */
const CARD_DROPPED = new Set([
  "script", "style", "template", "noscript", "iframe", "frame", "frameset", "object", "embed", "applet",
  "svg", "math", "textarea", "title", "select", "option", "button", "form", "input", "head", "meta", "link",
  "base", "noembed", "noframes", "xmp", "plaintext", "audio", "video", "source", "track", "canvas", "portal",
]);
const XHTML = "http://www.w3.org/1999/xhtml";
const SCHEME = /^[a-z][a-z0-9+.-]*:/i;
// Whitespace, C0 and C1 controls: the URL parser strips or skips them, which is how "\x01javascript:" slips by.
const UNSAFE_URL_CHARS = /[\u0000-\u0020\u007f-\u009f\u00a0\u1680\u2000-\u200f\u2028\u2029\u202f\u205f\u3000\ufeff\\]/;

/** A link a card may hold: http:, https:, relative, or #fragment. */
function safeHref(value) {
  const text = String(value ?? "");
  if (!text || UNSAFE_URL_CHARS.test(text)) return null;
  if (SCHEME.test(text) && !/^https?:/i.test(text)) return null;
  try {
    const url = new URL(text, location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? text : null;
  } catch {
    return null;
  }
}

/** An image a card may show: relative to the studio, or one of its /api/ paths; never another site. */
function safeSrc(value) {
  const text = String(value ?? "");
  if (!text || UNSAFE_URL_CHARS.test(text) || SCHEME.test(text) || text.startsWith("//")) return null;
  if (text.startsWith("/") && !text.startsWith("/api/")) return null;
  try {
    return new URL(text, location.href).origin === location.origin ? text : null;
  } catch {
    return null;
  }
}

/** One parsed node as a fresh, allowed node (or a fragment of its allowed children; or null). */
function cardNode(node) {
  if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
  if (node.nodeType !== Node.ELEMENT_NODE) return null; // comments, processing instructions
  const tag = node.localName;
  if (node.namespaceURI !== XHTML || CARD_DROPPED.has(tag)) return null;
  const children = document.createDocumentFragment();
  for (const child of node.childNodes) {
    const clean = cardNode(child);
    if (clean) children.append(clean);
  }
  if (!CARD_TAGS.has(tag)) return children; // an unknown wrapper (div, span, details...): its text stays
  const el = document.createElement(tag);
  if (tag === "a") {
    const href = safeHref(node.getAttribute("href"));
    if (href !== null) {
      el.setAttribute("href", href);
      if (/^https?:/i.test(href) || href.startsWith("//")) {
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noopener noreferrer");
      }
    }
  } else if (tag === "img") {
    const src = safeSrc(node.getAttribute("src"));
    if (src === null) return document.createTextNode(node.getAttribute("alt") || "");
    el.setAttribute("src", src);
    el.setAttribute("alt", node.getAttribute("alt") || "");
  } else if (tag === "th" || tag === "td") {
    // A table column's alignment, the one style markdown writes, kept as a class.
    const align = /^\s*text-align\s*:\s*(left|center|right)\s*;?\s*$/i.exec(node.getAttribute("style") || "");
    if (align) el.className = `align-${align[1].toLowerCase()}`;
  }
  if (tag !== "img" && tag !== "br" && tag !== "hr") el.append(children);
  return el;
}

/**
 * The model card's HTML as a DocumentFragment of allowed nodes, to append (`box.replaceChildren(cardFragment(x))`).
 */
export function cardFragment(text) {
  const template = document.createElement("template");
  template.innerHTML = String(text ?? "");
  const out = document.createDocumentFragment();
  for (const node of template.content.childNodes) {
    const clean = cardNode(node);
    if (clean) out.append(clean);
  }
  return out;
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
