// Runs page: every run folder the studio sees, as one sortable, filterable table.
// Ids for tests:
//   #runs-table             the table; rows are tbody tr[data-run-id="<id>"] (data-status too)
//   tr .status              the status badge (data-status="running|finished|stopped on budget|stopped|failed")
//   tr td[data-col=KEY]     each cell (KEY as in the API: emissions_g, energy_kwh, metric, status...);
//                           td.co2 (also .emissions) the run's g CO2eq
//   tr input.run-select     the row's checkbox; #runs-select-all selects the rows shown
//   th[data-sort=KEY]       click to sort (aria-sort shows the order)
//   #runs-filter            text filter; #runs-status-filter status filter
//   #compare-button         opens /compare?ids=<selected ids> (none selected: /compare, every finished run)
//   #runs-error             the last failure to read /api/runs; #runs-live shown while a run is running
import { get, messageOf } from "./api.js";
import { $, DASH, date, duration, esc, grams, kwh, num, qid, runHref, shortDate, statusBadge } from "./format.js";

const REFRESH_RUNNING_MS = 2000;
const REFRESH_IDLE_MS = 10000;

const state = {
  runs: [],
  raw: "",
  sort: { key: "started", dir: -1 },
  filter: "",
  status: "",
  selected: new Set(),
  timer: null,
};

const body = $("#runs-body");
const filterInput = $("#runs-filter");
const statusSelect = $("#runs-status-filter");
const compareButton = $("#compare-button");
const selectAll = $("#runs-select-all");
const errorBox = $("#runs-error");

function sortValue(run, key) {
  const v = run[key];
  if (key === "started") return run.started ?? run.updated ?? null;
  if (typeof v === "string") return v.toLowerCase();
  return v ?? null;
}

function compare(a, b) {
  const { key, dir } = state.sort;
  const va = sortValue(a, key);
  const vb = sortValue(b, key);
  if (va === null && vb === null) return 0;
  if (va === null) return 1; // empty values last, whatever the order
  if (vb === null) return -1;
  if (va < vb) return -dir;
  if (va > vb) return dir;
  return 0;
}

function matches(run) {
  if (state.status && run.status !== state.status) return false;
  if (!state.filter) return true;
  const hay = [run.name, run.task, run.base_model, run.folder, run.sweep, run.main_metric, run.status].join(" ").toLowerCase();
  return state.filter
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((word) => hay.includes(word));
}

function shownRuns() {
  return state.runs.filter(matches).sort(compare);
}

/** A Hub id as it is; a local folder by its last two parts (the whole path in the cell's title). */
function modelText(model) {
  if (!model) return DASH;
  if (!/^(\/|\.|~)/.test(model)) return model;
  const parts = model.split("/").filter(Boolean);
  return parts.length > 2 ? `…/${parts.slice(-2).join("/")}` : model;
}

function rowHtml(run) {
  const checked = state.selected.has(run.id);
  const sub = run.sweep ? `sweep ${run.sweep} · ${run.folder}` : run.folder !== run.name ? run.folder : "";
  const metric = run.metric === null || run.metric === undefined
    ? `<span class="muted">${esc(run.main_metric || "")} ${DASH}</span>`
    : `<span class="muted">${esc(run.main_metric || "")}</span> ${esc(num(run.metric))}`;
  return `<tr data-run-id="${esc(run.id)}" data-status="${esc(run.status)}"${checked ? ' class="selected"' : ""}>
<td class="select"><input type="checkbox" class="run-select" value="${esc(run.id)}" aria-label="Select ${esc(run.name)}"${checked ? " checked" : ""}></td>
<td data-col="name"><a class="run-name" href="${esc(runHref(run.id))}">${esc(run.name)}</a>${run.sweep ? ' <span class="tag">trial</span>' : ""}${sub ? `<span class="run-sub" title="${esc(sub)}">${esc(sub)}</span>` : ""}</td>
<td data-col="task">${esc(run.task || DASH)}</td>
<td data-col="base_model" class="model" title="${esc(run.base_model || "")}">${esc(modelText(run.base_model))}</td>
<td data-col="metric" class="num metric">${metric}</td>
<td data-col="emissions_g" class="num co2 emissions">${esc(grams(run.emissions_g))}</td>
<td data-col="energy_kwh" class="num kwh">${esc(kwh(run.energy_kwh))}</td>
<td data-col="duration_s" class="num">${esc(duration(run.duration_s))}</td>
<td data-col="status">${statusBadge(run.status)}</td>
<td data-col="started" class="num" title="started ${esc(date(run.started ?? run.updated))}, last change ${esc(date(run.updated))}">${esc(shortDate(run.started ?? run.updated))}</td>
</tr>`;
}

function render() {
  const rows = shownRuns();
  if (!state.runs.length) {
    body.innerHTML = '<tr class="empty-row"><td colspan="10">No run folders yet. Start one from <a href="/new">New run</a>, or point the studio at a folder of runs (<code>finetune-kit studio --runs DIR</code>).</td></tr>';
  } else if (!rows.length) {
    body.innerHTML = '<tr class="empty-row"><td colspan="10">No run matches the filter.</td></tr>';
  } else {
    body.innerHTML = rows.map(rowHtml).join("");
  }
  $("#runs-shown").textContent = rows.length === state.runs.length ? "" : `${rows.length} of ${state.runs.length} shown`;
  const shownSelected = rows.filter((r) => state.selected.has(r.id)).length;
  selectAll.checked = rows.length > 0 && shownSelected === rows.length;
  selectAll.indeterminate = shownSelected > 0 && shownSelected < rows.length;
  updateCompare();
  for (const th of document.querySelectorAll("#runs-table th[data-sort]")) {
    if (th.dataset.sort === state.sort.key) th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

function renderStats() {
  const sum = (key) => state.runs.reduce((total, r) => total + (typeof r[key] === "number" ? r[key] : 0), 0);
  const running = state.runs.filter((r) => r.status === "running").length;
  $("#stat-co2").textContent = state.runs.length ? grams(sum("emissions_g")) : DASH;
  $("#stat-kwh").textContent = state.runs.length ? kwh(sum("energy_kwh")) : DASH;
  $("#stat-runs").textContent = String(state.runs.length);
  $("#stat-running").textContent = String(running);
  $("#runs-live").hidden = running === 0;
  const sweeps = new Set(state.runs.filter((r) => r.sweep).map((r) => r.sweep)).size;
  $("#runs-summary").textContent = `${state.runs.length} run${state.runs.length === 1 ? "" : "s"}${sweeps ? ` (${sweeps} sweep${sweeps === 1 ? "" : "s"})` : ""}; every number read from the run folders.`;
}

function updateCompare() {
  const known = new Set(state.runs.map((r) => r.id));
  for (const id of state.selected) if (!known.has(id)) state.selected.delete(id);
  const n = state.selected.size;
  compareButton.textContent = n ? `Compare ${n}` : "Compare all";
  compareButton.title = n ? "The selected runs: metric against g CO2eq, and their curves" : "Every finished run and sweep trial (select runs to compare only those)";
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    const text = JSON.stringify((await get("/api/runs")).runs || []);
    errorBox.hidden = true;
    if (text !== state.raw) {
      state.raw = text;
      state.runs = JSON.parse(text);
      renderStats();
      render();
    }
  } catch (err) {
    errorBox.textContent = `Cannot list the runs: ${messageOf(err)}`;
    errorBox.hidden = false;
    if (!state.runs.length) body.innerHTML = '<tr class="empty-row"><td colspan="10">No runs read.</td></tr>';
  }
  const running = state.runs.some((r) => r.status === "running");
  state.timer = setTimeout(tick, running ? REFRESH_RUNNING_MS : REFRESH_IDLE_MS);
}

function tick() {
  if (document.hidden) {
    state.timer = setTimeout(tick, 1000);
    return;
  }
  refresh();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});

for (const th of document.querySelectorAll("#runs-table th[data-sort]")) {
  th.tabIndex = 0;
  const sortBy = () => {
    const key = th.dataset.sort;
    if (state.sort.key === key) state.sort.dir = -state.sort.dir;
    else state.sort = { key, dir: ["name", "task", "base_model", "status"].includes(key) ? 1 : -1 };
    render();
  };
  th.addEventListener("click", sortBy);
  th.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      sortBy();
    }
  });
}

let filterTimer;
filterInput.addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    state.filter = filterInput.value.trim();
    render();
  }, 80);
});
statusSelect.addEventListener("change", () => {
  state.status = statusSelect.value;
  render();
});

body.addEventListener("change", (e) => {
  const box = e.target.closest("input.run-select");
  if (!box) return;
  if (box.checked) state.selected.add(box.value);
  else state.selected.delete(box.value);
  box.closest("tr").classList.toggle("selected", box.checked);
  const rows = shownRuns();
  const shownSelected = rows.filter((r) => state.selected.has(r.id)).length;
  selectAll.checked = rows.length > 0 && shownSelected === rows.length;
  selectAll.indeterminate = shownSelected > 0 && shownSelected < rows.length;
  updateCompare();
});

// A click anywhere on a row (not on its checkbox or link) opens the run.
body.addEventListener("click", (e) => {
  if (e.target.closest("a, input, button, label")) return;
  const row = e.target.closest("tr[data-run-id]");
  if (!row || window.getSelection()?.toString()) return;
  location.href = runHref(row.dataset.runId);
});

selectAll.addEventListener("change", () => {
  for (const run of shownRuns()) {
    if (selectAll.checked) state.selected.add(run.id);
    else state.selected.delete(run.id);
  }
  render();
});

compareButton.addEventListener("click", () => {
  const ids = [...state.selected];
  location.href = ids.length ? `/compare?ids=${ids.map(qid).join(",")}` : "/compare";
});

refresh();
