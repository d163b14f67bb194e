// Compare page: metric against g CO2eq for the chosen runs (?ids=ID,ID; none: every finished run and sweep
// trial), the Pareto front marked, and the runs' curves overlaid.
// Ids for tests:
//   #chart-pareto            the scatter; its <svg data-points="N" data-front="F">; points are circle.chart-point
//                            (data-id = run id; .on-front on the front); the front is path.chart-front
//   #compare-legend          the runs table; rows tr[data-run-id] (class on-front when on the front)
//   #chart-compare-loss, #chart-compare-metric, #chart-compare-co2: curves overlaid, <svg data-points>
//   #compare-metric          which main metric to plot when the runs have several ("" = every metric, each its own
//                            front); #compare-sweep (no ids given; ?sweep=NAME preselects a sweep's trials)
//   #compare-error, #compare-summary
import { get, idPath, messageOf } from "./api.js";
import { LineChart, PALETTE, ScatterChart, paretoFront } from "./chart.js";
import { $, DASH, duration, esc, grams, isNumber, kwh, num, param, runHref, statusBadge } from "./format.js";

const MAX_CURVES = 12;
const ids = (param("ids") || "").split(",").map((s) => s.trim()).filter(Boolean);
const state = { runs: [], metric: null, sweep: param("sweep") || "", logs: new Map() };

const scatter = new ScatterChart($("#chart-pareto"), {
  xLabel: "g CO2eq",
  yLabel: "metric",
  title: "main metric against grams CO2eq",
  empty: "no run with both a metric and g CO2eq",
  valueText: (v) => num(v),
  xText: (v) => `${grams(v)} g`,
  onClick: (point) => {
    location.href = runHref(point.id);
  },
});
const curves = {
  loss: new LineChart($("#chart-compare-loss"), { xLabel: "step", yLabel: "loss", valueText: (v) => num(v), alwaysLegend: true }),
  metric: new LineChart($("#chart-compare-metric"), { xLabel: "step", yLabel: "", valueText: (v) => num(v), alwaysLegend: true, empty: "no evaluation logged" }),
  co2: new LineChart($("#chart-compare-co2"), { xLabel: "step", yLabel: "g CO2eq", valueText: (v) => `${grams(v)} g`, alwaysLegend: true }),
};

function fail(message) {
  const box = $("#compare-error");
  box.textContent = message;
  box.hidden = false;
}

/** The runs chosen: by id, or every finished run (and sweep trial) when none are named. */
function chosen(all) {
  if (ids.length) {
    const byId = new Map(all.map((r) => [r.id, r]));
    const missing = ids.filter((i) => !byId.has(i));
    if (missing.length) fail(`Not found in the studio's folders: ${missing.join(", ")}`);
    return ids.map((i) => byId.get(i)).filter(Boolean);
  }
  return all.filter((r) => ["finished", "stopped on budget"].includes(r.status));
}

function metricsOf(runs) {
  const counts = new Map();
  for (const r of runs) if (r.main_metric) counts.set(r.main_metric, (counts.get(r.main_metric) || 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([name]) => name);
}

function inView() {
  let runs = state.runs;
  if (state.sweep === "__none__") runs = runs.filter((r) => !r.sweep);
  else if (state.sweep) runs = runs.filter((r) => r.sweep === state.sweep);
  if (state.metric) runs = runs.filter((r) => !r.main_metric || r.main_metric === state.metric);
  return runs;
}

/** Each metric's own front (a Pareto front across two metrics would mean nothing). */
function frontsOf(points, runs) {
  const byId = new Map(runs.map((r) => [r.id, r]));
  const groups = new Map();
  for (const p of points) {
    const key = byId.get(p.id).main_metric || "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  return [...groups.values()].map((group) => paretoFront(group, byId.get(group[0].id).greater_is_better !== false));
}

function render() {
  const runs = inView();
  const colors = new Map(runs.map((r, i) => [r.id, PALETTE[i % PALETTE.length]]));
  const plotted = runs.filter((r) => isNumber(r.metric) && isNumber(r.emissions_g));
  const greater = plotted.length ? plotted[0].greater_is_better !== false : true;
  const points = plotted.map((r) => ({ x: r.emissions_g, y: r.metric, label: r.name, id: r.id, color: colors.get(r.id), note: [r.main_metric, r.sweep ? `sweep ${r.sweep}` : r.task].filter(Boolean).join(" · ") }));
  const fronts = frontsOf(points, runs);
  const onFront = new Set(fronts.flat().map((p) => p.id));
  for (const p of points) p.front = onFront.has(p.id);
  const names = metricsOf(plotted);
  const mixed = names.length > 1;
  scatter.options.yLabel = state.metric || (mixed ? `main metric (${names.join(", ")})` : names[0] || "metric");
  scatter.setData({ points, fronts });
  $("#pareto-title").textContent = `${state.metric || (mixed ? "Main metric" : names[0] || "Metric")} against g CO2eq`;
  $("#pareto-note").textContent = mixed
    ? `These runs have different main metrics (${names.join(", ")}): each metric has its own front, and the Metric menu shows one at a time. Click a point to open its run.`
    : `${greater ? "Up" : "Down"} and to the left is better (${names[0] || "the metric"}: ${greater ? "higher" : "lower"} is better). The dashed line joins the runs no other run beats on both. Click a point to open its run.`;
  $("#legend-metric-head").textContent = state.metric || (mixed ? "Main metric" : names[0] || "Metric");
  $("#compare-legend-body").innerHTML = runs.length
    ? runs
        .map((r) => `<tr data-run-id="${esc(r.id)}"${onFront.has(r.id) ? ' class="on-front"' : ""}>
<td><span class="legend-item"><i style="background:${esc(colors.get(r.id))}"></i></span></td>
<td><a href="${esc(runHref(r.id))}">${esc(r.name)}</a>${r.sweep ? ` <span class="tag">${esc(r.sweep)}</span>` : ""}</td>
<td>${esc(r.task || DASH)}</td>
<td class="num">${mixed && !state.metric && r.main_metric ? `<small class="muted">${esc(r.main_metric)}</small> ` : ""}${esc(num(r.metric))}</td>
<td class="num co2">${esc(grams(r.emissions_g))}</td>
<td class="num">${esc(kwh(r.energy_kwh))}</td>
<td class="num">${esc(duration(r.duration_s))}</td>
<td>${onFront.has(r.id) ? '<span class="ok-text">on the front</span>' : isNumber(r.metric) && isNumber(r.emissions_g) ? '<span class="muted">beaten</span>' : '<span class="muted">not plotted</span>'}</td>
<td>${statusBadge(r.status)}</td></tr>`)
        .join("")
    : '<tr class="empty-row"><td colspan="9">No runs to compare yet: finished runs appear here, or select some on the <a href="/">Runs</a> page.</td></tr>';
  const others = state.runs.length - runs.length;
  $("#compare-summary").textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}${ids.length ? " selected" : ", every finished run and sweep trial"}; ${onFront.size} on the Pareto front${others > 0 ? ` (${others} with another metric or sweep not shown)` : ""}.`;
  renderCurves(runs, colors);
}

async function logOf(id) {
  if (!state.logs.has(id)) {
    state.logs.set(id, get(`/api/runs/${idPath(id)}/log`).then((d) => d.entries || [], () => []));
  }
  return state.logs.get(id);
}

let curveToken = 0;
async function renderCurves(runs, colors) {
  const token = ++curveToken;
  const shown = runs.slice(0, MAX_CURVES);
  $("#curves-note").textContent = runs.length > MAX_CURVES ? `Curves of the first ${MAX_CURVES} runs of ${runs.length}.` : "";
  const logs = [];
  for (let i = 0; i < shown.length; i += 4) {
    logs.push(...(await Promise.all(shown.slice(i, i + 4).map((r) => logOf(r.id)))));
    if (token !== curveToken) return;
  }
  const series = { loss: [], metric: [], co2: [] };
  shown.forEach((run, i) => {
    const entries = logs[i];
    const key = `eval_${run.main_metric || state.metric}`;
    const pick = (field) => entries.filter((e) => isNumber(e.step) && isNumber(e[field])).map((e) => [e.step, e[field]]);
    const color = colors.get(run.id);
    let loss = pick("loss");
    if (!loss.length) loss = pick("eval_loss");
    series.loss.push({ key: run.id, name: run.name, color, points: loss });
    series.metric.push({ key: run.id, name: run.name, color, points: pick(key) });
    series.co2.push({ key: run.id, name: run.name, color, points: pick("emissions_g") });
  });
  const names = metricsOf(shown);
  const title = state.metric || (names.length === 1 ? names[0] : "main metric");
  $("#compare-metric-title").textContent = `Eval ${title}`;
  curves.metric.options.yLabel = title;
  for (const [name, chart] of Object.entries(curves)) chart.setSeries(series[name]);
}

function setupSelectors() {
  const metrics = metricsOf(state.runs);
  state.metric = metrics.length === 1 ? metrics[0] : "";
  if (metrics.length > 1) {
    const select = $("#compare-metric");
    select.innerHTML = `<option value="">every metric</option>${metrics.map((m) => `<option value="${esc(m)}">${esc(m)}</option>`).join("")}`;
    $("#compare-metric-field").hidden = false;
    select.addEventListener("change", () => {
      state.metric = select.value;
      render();
    });
  }
  const sweeps = [...new Set(state.runs.filter((r) => r.sweep).map((r) => r.sweep))];
  if (!ids.length && sweeps.length) {
    const select = $("#compare-sweep");
    select.innerHTML = `<option value="">all finished runs</option><option value="__none__">runs outside sweeps</option>${sweeps.map((s) => `<option value="${esc(s)}">sweep ${esc(s)}</option>`).join("")}`;
    select.value = sweeps.includes(state.sweep) ? state.sweep : "";
    state.sweep = select.value;
    $("#compare-sweep-field").hidden = false;
    select.addEventListener("change", () => {
      state.sweep = select.value;
      render();
    });
  }
}

async function start() {
  let all;
  try {
    all = (await get("/api/runs")).runs || [];
  } catch (err) {
    fail(`Cannot list the runs: ${messageOf(err)}`);
    $("#compare-summary").textContent = "";
    return;
  }
  state.runs = chosen(all);
  setupSelectors();
  render();
}

start();
