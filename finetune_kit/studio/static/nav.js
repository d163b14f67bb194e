// The studio's header: brand, and the links to every page (the current one marked aria-current="page").
// Ids: #nav (the <header>), a[data-nav="runs|compare|new|chat|hub"]; #toasts (notices: toast()).
import { esc } from "./format.js";

const LINKS = [
  ["runs", "/", "Runs"],
  ["compare", "/compare", "Compare"],
  ["new", "/new", "New run"],
  ["chat", "/chat", "Chat"],
  ["hub", "/hub", "Hub"],
];

function current() {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  if (path === "/" || path.endsWith("runs.html")) return "runs";
  if (path === "/run" || path.endsWith("run.html")) return "runs";
  for (const [key] of LINKS) if (path === `/${key}` || path.endsWith(`/${key}.html`)) return key;
  return null;
}

export function mountNav() {
  let header = document.getElementById("nav");
  if (!header) {
    header = document.createElement("header");
    header.id = "nav";
    document.body.prepend(header);
  }
  header.className = "topbar";
  const active = current();
  header.innerHTML = `
    <a class="brand" href="/" aria-label="finetune-kit studio, runs">
      <svg class="brand-mark" viewBox="0 0 24 24" aria-hidden="true"><path d="M12 2C7 7 5 10.5 5 14a7 7 0 0 0 14 0c0-3.5-2-7-7-12Zm0 18a5 5 0 0 1-5-5c0-1.5.5-3 1.6-4.8L12 16l3.4-5.8C16.5 12 17 13.5 17 15a5 5 0 0 1-5 5Z"/></svg>
      <span>finetune-kit <b>studio</b></span>
    </a>
    <nav aria-label="Studio pages"><ul>
      ${LINKS.map(([key, href, label]) => `<li><a data-nav="${key}" href="${href}"${key === active ? ' aria-current="page"' : ""}>${esc(label)}</a></li>`).join("")}
    </ul></nav>`;
  if (!document.getElementById("toasts")) {
    const toasts = document.createElement("div");
    toasts.id = "toasts";
    toasts.setAttribute("role", "status");
    toasts.setAttribute("aria-live", "polite");
    document.body.append(toasts);
  }
}

/** A short notice at the bottom of the window; kind "error" stays until clicked. */
export function toast(message, kind = "info", ms = 5000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.textContent = message;
  item.title = "click to close";
  item.addEventListener("click", () => item.remove());
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), ms);
}

mountNav();
