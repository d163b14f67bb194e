// Run page: one run's numbers, its curves (live while it trains), estimate vs actual, emissions, card, samples.
// Ids for tests:
//   #run-view (shown once loaded; data-status = the run's status), #run-status .status (badge), #run-name
//   #stat-co2, #stat-kwh, #stat-duration, #stat-metric, #stat-step
//   #chart-loss, #chart-metric, #chart-lr, #chart-co2: each holds an <svg data-points="N"> (N = points drawn;
//     the chart div carries data-points too); #run-view[data-log-entries] = log lines received so far
//   #live-note shown while the event stream is open
//   #estimate-vs-actual (table#estimate-table), #emissions-breakdown (table#emissions-table), #metrics, #samples,
//   #card (the rendered model card), #recipe-yaml
//   #stop-button (while a train job of this studio runs the run), #resume-button (a stopped or failed run: train --resume), #chat-button (a chat-capable finished run), #export-button + #export-status,
//   #push-repo, #push-private, #push-button, #push-result
//   #run-notice (what a stopped, failed or budget-stopped run means; how to stop a run started outside the studio;
//     a refused resume's one line, in #resume-refused), #compare-link
//   #run-error (load failure), #run-waiting (a run whose folder is not there yet: the page waits on the job New run
//     started, kept in sessionStorage "studio-job:<run id>" or given as ?job=ID, or else a few seconds)
import { ApiError, get, idPath, messageOf, pollJob, post } from "./api.js";
import { LineChart } from "./chart.js";
import { $, DASH, FINAL_STATUSES, busy, cardFragment, date, duration, esc, grams, isNumber, kwh, num, param, qid, statusBadge } from "./format.js";
import { toast } from "./nav.js";
import { pushForm } from "./push.js";

const id = param("id");
const jobId = param("job") || storedJob();

/** The job New run started for this run (see new.js openRun), if this tab started it. */
function storedJob() {
  try {
    return sessionStorage.getItem(`studio-job:${param("id")}`);
  } catch {
    return null;
  }
}
const view = $("#run-view");
const errorBox = $("#run-error");

const state = {
  summary: null,
  detail: null,
  entries: 0,
  lastStep: null,
  lastEpoch: null,
  source: null,
  reconnect: null,
  metricKey: null,
  liveGrams: null,
  resuming: false,
  trainJob: undefined, // this studio's running train job for the run: a Job, null (none), undefined (not known)
  refused: null, // a refused resume's one line
};

// The evaluation's speed and counters: the Trainer's, not the model's scores (log keys carry an "eval_" prefix).
const SPEED = /^(eval_)?(runtime|samples_per_second|steps_per_second|epoch|num_input_tokens_seen|model_preparation_time)$/;

const valueText = (v) => num(v);
const charts = {
  loss: new LineChart($("#chart-loss"), { xLabel: "step", yLabel: "loss", title: "loss over steps", alwaysLegend: true, valueText }),
  metric: new LineChart($("#chart-metric"), { xLabel: "step", yLabel: "", title: "main metric over steps", valueText, empty: "no evaluation yet" }),
  lr: new LineChart($("#chart-lr"), { xLabel: "step", yLabel: "learning rate", title: "learning rate over steps", valueText: (v) => v.toExponential(2) }),
  co2: new LineChart($("#chart-co2"), { xLabel: "step", yLabel: "g CO2eq", title: "grams CO2eq over steps", valueText: (v) => `${grams(v)} g` }),
};

function showError(message) {
  errorBox.innerHTML = `${esc(message)} <a href="/">Back to the runs</a>`;
  errorBox.hidden = false;
}

const isFinal = (status) => FINAL_STATUSES.includes(status);

/** The log's key for the main metric: eval_<main_metric>, or the first eval metric that is not a speed. */
function metricKeyFor(entry) {
  if (state.metricKey) return state.metricKey;
  const main = state.summary?.main_metric;
  if (main) state.metricKey = `eval_${main}`;
  else if (entry) {
    const key = Object.keys(entry).find((k) => k.startsWith("eval_") && k !== "eval_loss" && !SPEED.test(k) && isNumber(entry[k]));
    if (key) state.metricKey = key;
  }
  if (state.metricKey) {
    $("#chart-metric-title").textContent = state.metricKey.replace(/^eval_/, "eval ");
    charts.metric.options.yLabel = state.metricKey.replace(/^eval_/, "");
  }
  return state.metricKey;
}

/** One log entry into the charts (live or from the whole log). */
function addEntry(entry) {
  state.entries += 1;
  const step = isNumber(entry.step) ? entry.step : null;
  if (step === null) return;
  if (isNumber(entry.loss)) charts.loss.append("loss", step, entry.loss, "train loss");
  if (isNumber(entry.eval_loss)) charts.loss.append("eval_loss", step, entry.eval_loss, "eval loss");
  const key = metricKeyFor(entry);
  if (key && isNumber(entry[key])) charts.metric.append(key, step, entry[key], key.replace(/^eval_/, "eval "));
  if (isNumber(entry.learning_rate)) charts.lr.append("lr", step, entry.learning_rate, "learning rate");
  if (isNumber(entry.emissions_g)) {
    charts.co2.append("co2", step, entry.emissions_g, "g CO2eq");
    state.liveGrams = entry.emissions_g;
  }
  if (state.lastStep === null || step >= state.lastStep) {
    state.lastStep = step;
    if (isNumber(entry.epoch)) state.lastEpoch = entry.epoch;
  }
}

function renderProgress() {
  view.dataset.logEntries = String(state.entries);
  $("#stat-step").innerHTML = state.lastStep === null
    ? DASH
    : `${esc(num(state.lastStep))}${isNumber(state.lastEpoch) ? ` <small class="muted">epoch ${esc(state.lastEpoch.toFixed(2))}</small>` : ""}`;
  const s = state.summary;
  // The log's latest grams while the summary has none yet, or an older reading (live, or a stopped run's log).
  const logged = s && isNumber(state.liveGrams) && (!isNumber(s.emissions_g) || (s.status === "running" && state.liveGrams > s.emissions_g));
  if (logged) $("#stat-co2").textContent = grams(state.liveGrams);
}

function renderSummary() {
  const s = state.summary;
  document.title = `${s.name} · finetune-kit studio`;
  view.dataset.status = s.status;
  $("#run-name").textContent = s.name;
  $("#run-status").innerHTML = statusBadge(s.status);
  const meta = [
    ["task", s.task],
    ["base model", s.base_model],
    ["folder", s.folder],
    ["sweep", s.sweep],
    ["started", isNumber(s.started) ? date(s.started) : null],
  ].filter(([, v]) => v);
  $("#run-meta").innerHTML = meta.map(([k, v]) => `<span>${esc(k)} <b>${esc(v)}</b></span>`).join("");
  $("#stat-co2").textContent = grams(s.emissions_g);
  $("#stat-kwh").textContent = kwh(s.energy_kwh);
  $("#stat-duration").textContent = duration(s.duration_s);
  $("#stat-metric-label").textContent = s.main_metric ? `${s.main_metric} ${s.greater_is_better ? "↑" : "↓"}` : "Main metric";
  $("#stat-metric").textContent = num(s.metric);
  // Stop only for a run this studio trains: a run started elsewhere is stopped where it runs.
  const mine = s.status === "running" && state.trainJob !== null;
  $("#stop-button").hidden = !mine;
  $("#resume-button").hidden = !["stopped", "failed"].includes(s.status) || state.resuming;
  const chat = $("#chat-button");
  chat.hidden = !s.chat;
  chat.href = `/chat?model=${qid(s.id)}`;
  $("#compare-link").href = s.sweep ? `/compare?sweep=${encodeURIComponent(s.sweep)}` : "/compare";
  const notes = {
    stopped: "Stopped on request at a step boundary, with a checkpoint kept: <code>finetune-kit train RECIPE --resume</code> continues it, and counts both sessions' energy.",
    failed: "The process building this run is gone without a stop (killed or crashed). <code>finetune-kit train RECIPE --resume</code> continues from its last checkpoint.",
    "stopped on budget": "Training ended when the run reached its emissions budget (<code>emissions.max_co2_g</code> or <code>max_kwh</code>); the model is the best checkpoint so far.",
  };
  if (s.status === "running" && state.trainJob === null) {
    notes.running = "This run was started outside this studio: stop it where it runs (Ctrl-C or <code>kill -TERM PID</code>).";
  }
  const notice = $("#run-notice");
  notice.dataset.kind = state.refused ? "resume-refused" : notes[s.status] ? s.status : "";
  if (state.refused) {
    notice.innerHTML = '<span class="bad-text">Resume refused:</span> <code class="command" id="resume-refused"></code>';
    $("#resume-refused").textContent = state.refused;
  } else notice.innerHTML = notes[s.status] || "";
  notice.hidden = !state.refused && !notes[s.status];
  $("#export-button").disabled = !["finished", "stopped on budget"].includes(s.status);
  $("#export-button").title = $("#export-button").disabled ? "a finished run can be exported" : "finetune-kit export: the model as ONNX in the run folder";
  $("#push-button").disabled = !["finished", "stopped on budget"].includes(s.status);
  renderProgress();
}

function kvTable(rows, tableId) {
  return `<table class="kv compact"${tableId ? ` id="${tableId}"` : ""}><tbody>${rows
    .map(([k, v, cls]) => `<tr><th scope="row">${esc(k)}</th><td${cls ? ` class="${cls}"` : ""}>${v}</td></tr>`)
    .join("")}</tbody></table>`;
}

function diffText(estimate, actual) {
  if (!isNumber(estimate) || !isNumber(actual) || estimate === 0) return "";
  const ratio = actual / estimate - 1;
  const cls = ratio > 0 ? "diff-up" : "diff-down";
  return `<span class="${cls}">${ratio > 0 ? "+" : ""}${(ratio * 100).toFixed(0)}%</span>`;
}

function renderEstimate() {
  const box = $("#estimate-vs-actual");
  const est = state.detail?.estimate;
  const s = state.summary;
  const metrics = state.detail?.metrics || {};
  if (!est || typeof est !== "object") {
    box.innerHTML = `<p class="muted">No estimate was made before this run. <code>finetune-kit estimate</code>, the Estimate button on New run, or an emissions budget in the recipe make one.</p>`;
    return;
  }
  const actual = {
    wall_s: isNumber(metrics.duration_s) ? metrics.duration_s : s.duration_s,
    kwh: isNumber(metrics.energy_kwh) ? metrics.energy_kwh : s.energy_kwh,
    co2_g: isNumber(metrics.emissions_g) ? metrics.emissions_g : s.emissions_g,
  };
  const rows = [
    ["time", "wall_s", duration],
    ["kWh", "kwh", kwh],
    ["g CO2eq", "co2_g", grams],
  ].filter(([, key]) => isNumber(est[key]));
  const range = (key, fmt) => (est.low && est.high && isNumber(est.low[key]) && isNumber(est.high[key]) ? `${fmt(est.low[key])} – ${fmt(est.high[key])}` : DASH);
  const partial = s.status === "running" ? ' <small class="muted">(so far)</small>' : "";
  let out = `<table id="estimate-table" class="compact"><thead><tr><th></th><th class="num">estimate</th><th class="num">range</th><th class="num">actual</th><th class="num">diff</th></tr></thead><tbody>${rows
    .map(([label, key, fmt]) => `<tr data-key="${key}"><th scope="row">${esc(label)}</th><td class="num${key === "co2_g" ? " co2" : ""}">${esc(fmt(est[key]))}</td><td class="num muted">${esc(range(key, fmt))}</td><td class="num${key === "co2_g" ? " co2" : ""}">${esc(fmt(actual[key]))}${isNumber(actual[key]) ? partial : ""}</td><td class="num">${s.status === "running" ? "" : diffText(est[key], actual[key])}</td></tr>`)
    .join("")}</tbody></table>`;
  if (!rows.length) out = "";
  const phases = est.phases && typeof est.phases === "object" ? Object.entries(est.phases) : [];
  if (phases.length) {
    out += `<details style="margin-top:.6rem"><summary>Phases</summary><table class="compact"><thead><tr><th>phase</th><th>work</th><th class="num">time</th><th class="num">kWh</th><th class="num">g CO2eq</th></tr></thead><tbody>${phases
      .map(([name, p]) => `<tr><td>${esc(name)}</td><td>${esc(p?.work ?? "")}</td><td class="num">${esc(duration(p?.wall_s))}</td><td class="num">${esc(kwh(p?.kwh))}</td><td class="num">${esc(grams(p?.co2_g))}</td></tr>`)
      .join("")}</tbody></table></details>`;
  }
  const known = new Set(["wall_s", "kwh", "co2_g", "low", "high", "phases", "finish_seconds", "calibration"]);
  const extra = Object.entries(est).filter(([k, v]) => !known.has(k) && (isNumber(v) || typeof v === "string"));
  if (extra.length) out += kvTable(extra.map(([k, v]) => [k, esc(isNumber(v) ? num(v) : v)]));
  box.innerHTML = out || '<p class="muted">The estimate holds no totals.</p>';
}

function renderEmissions() {
  const box = $("#emissions-breakdown");
  const e = state.detail?.emissions;
  const s = state.summary;
  if (!e || typeof e !== "object") {
    const spent = isNumber(s.emissions_g) ? s.emissions_g : state.liveGrams;
    box.innerHTML = s.status === "running"
      ? isNumber(spent)
        ? `<p>So far: <span class="co2">${esc(grams(spent))} g CO2eq</span>${isNumber(s.energy_kwh) ? `, ${esc(kwh(s.energy_kwh))} kWh` : ""}${isNumber(s.duration_s) ? `, ${esc(duration(s.duration_s))}` : ""}. The breakdown (hardware, location, sessions) is written when the run ends.</p>`
        : "<p class=\"muted\">No reading yet: the first comes with the first logged steps. The breakdown (hardware, location, sessions) is written when the run ends.</p>"
      : '<p class="muted">No emissions measured for this run (<code>emissions.enabled: false</code>, or it ended before its first reading).</p>';
    return;
  }
  const rows = [
    ["g CO2eq", esc(grams(e.emissions_g)), "co2"],
    ["energy", `${esc(kwh(e.energy_kwh))} kWh`],
    ["duration", esc(duration(e.duration_s))],
    ["intensity", isNumber(e.emissions_g) && isNumber(e.energy_kwh) && e.energy_kwh > 0 ? `${esc(num(e.emissions_g / e.energy_kwh, 3))} g/kWh` : null],
    ["hardware", esc(e.hardware ?? [e.cpu_model, e.gpu_model].filter(Boolean).join(", "))],
    ["location", esc(e.geographical_location ?? e.location ?? [e.region, e.country_name].filter(Boolean).join(", "))],
    ["sessions", isNumber(e.sessions) ? esc(e.sessions) : null],
    ["processes", isNumber(e.processes) ? esc(e.processes) : null],
    ["measured by", esc([e.source, e.codecarbon_version].filter(Boolean).join(" "))],
  ];
  const perPoint = state.detail?.metrics?.emissions_g_per_point;
  if (isNumber(perPoint)) rows.push(["g per metric point", esc(num(perPoint))]);
  box.innerHTML = kvTable(rows.filter(([, v]) => v !== null && v !== ""), "emissions-table");
}

function renderMetrics() {
  const box = $("#metrics");
  const m = state.detail?.metrics;
  if (!m || typeof m !== "object") {
    box.innerHTML = `<p class="muted">${state.summary.status === "running" ? "Written when the run ends; the curves above are live." : "No metrics.json in this run folder."}</p>`;
    return;
  }
  const splits = ["before_training", "validation", "test"].filter((k) => m[k] && typeof m[k] === "object");
  const keys = [...new Set(splits.flatMap((k) => Object.keys(m[k]).filter((name) => isNumber(m[k][name]) && !SPEED.test(name))))];
  const main = m.main_metric;
  keys.sort((a, b) => (a === main ? -1 : b === main ? 1 : 0));
  let out = "";
  if (keys.length) {
    out += `<div class="table-wrap"><table id="metrics-table" class="compact"><thead><tr><th>metric</th>${splits.map((k) => `<th class="num">${esc(k.replace("_", " "))}</th>`).join("")}</tr></thead><tbody>${keys
      .map((name) => `<tr${name === main ? ' class="main-metric"' : ""}><td>${name === main ? `<b>${esc(name)}</b> <span class="tag">main</span>` : esc(name)}</td>${splits.map((k) => `<td class="num">${esc(num(m[k][name]))}</td>`).join("")}</tr>`)
      .join("")}</tbody></table></div>`;
  }
  if (m.stopped_on_budget) out += `<p class="notice">Stopped on budget: ${esc(typeof m.stopped_on_budget === "object" ? JSON.stringify(m.stopped_on_budget) : m.stopped_on_budget)}</p>`;
  const train = m.train && typeof m.train === "object" ? Object.entries(m.train).filter(([, v]) => isNumber(v) || typeof v === "string") : [];
  if (train.length) out += `<details style="margin-top:.6rem"><summary>Training</summary>${kvTable(train.map(([k, v]) => [k, esc(isNumber(v) ? num(v) : v)]))}</details>`;
  const model = m.model && typeof m.model === "object" ? Object.entries(m.model).filter(([, v]) => isNumber(v) || typeof v === "string") : [];
  if (model.length) out += `<details style="margin-top:.4rem"><summary>Model</summary>${kvTable(model.map(([k, v]) => [k, esc(isNumber(v) ? num(v) : v)]))}</details>`;
  box.innerHTML = out || '<p class="muted">metrics.json holds no scores.</p>';
}

function renderSamples() {
  const box = $("#samples");
  const samples = state.detail?.samples || [];
  if (!samples.length) {
    box.innerHTML = '<p class="muted">No sample predictions or generated replies saved by this run.</p>';
    return;
  }
  const order = ["prompt", "input", "text", "output", "reply", "prediction", "label", "reference", "target"];
  box.innerHTML = samples
    .map((sample) => {
      const keys = Object.keys(sample).sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
      return `<dl class="sample">${keys
        .map((k) => `<dt>${esc(k)}</dt><dd>${esc(typeof sample[k] === "string" ? sample[k] : JSON.stringify(sample[k]))}</dd>`)
        .join("")}</dl>`;
    })
    .join("");
}

function renderDetail() {
  const d = state.detail;
  renderSummary();
  renderEstimate();
  renderEmissions();
  renderMetrics();
  renderSamples();
  // The card is HTML the studio rendered from the run's README.md (raw HTML escaped): its allowed nodes, appended.
  const card = $("#card");
  if (d.card_html) card.replaceChildren(cardFragment(d.card_html));
  else card.innerHTML = `<p class="muted">${state.summary.status === "running" ? "The model card is written when the run ends." : "No model card (README.md) in this run folder."}</p>`;
  $("#recipe-yaml").textContent = d.recipe || "";
}

/** This studio's running train job for the run: a Job, null when there is none, undefined when unknown. */
async function findTrainJob() {
  try {
    const jobs = (await get("/api/jobs")).jobs || [];
    return jobs.find((j) => j.kind === "train" && j.run_id === id && j.status === "running") || null;
  } catch {
    return undefined; // Stop stays offered; the studio answers 409 when it trains nothing
  }
}

/** The jobs asked again (the run's status changed), and the buttons and notice redrawn. */
async function refreshTrainJob() {
  state.trainJob = await findTrainJob();
  if (state.summary) renderSummary();
}

async function loadDetail() {
  const [detail, job] = await Promise.all([get(`/api/runs/${idPath(id)}`), findTrainJob()]);
  state.detail = detail;
  state.trainJob = job;
  state.summary = state.detail.summary;
  renderDetail();
}

// ---- live ---------------------------------------------------------------------------------------------
function connect() {
  clearTimeout(state.reconnect);
  state.source?.close();
  const source = new EventSource(`/api/runs/${idPath(id)}/events?after=${state.entries}`);
  state.source = source;
  $("#live-note").hidden = false;
  source.addEventListener("log", (e) => {
    try {
      addEntry(JSON.parse(e.data));
    } catch {
      return;
    }
    renderProgress();
  });
  // The log was written anew (a resume dropped the steps after its checkpoint, --overwrite started over):
  // read it whole again, then follow it from there.
  source.addEventListener("reset", async () => {
    source.close();
    try {
      await reloadLog();
    } catch (err) {
      toast(`Could not reload the log: ${messageOf(err)}`, "error");
    }
    connect();
  });
  source.addEventListener("status", async (e) => {
    let summary;
    try {
      summary = JSON.parse(e.data);
    } catch {
      return;
    }
    const was = state.summary?.status;
    if (isFinal(summary.status)) {
      source.close();
      $("#live-note").hidden = true;
      // The whole page changes at once: metrics, emissions and card are read before the badge says so.
      if (was !== summary.status && (await reloaded())) return;
    }
    state.summary = summary;
    renderSummary();
    renderEstimate();
    renderEmissions();
    if (was !== summary.status) refreshTrainJob();
  });
  // The stream ends when the run does; EventSource would reconnect with the old ?after=: reconnect by hand.
  source.onerror = () => {
    source.close();
    $("#live-note").hidden = true;
    if (state.summary && !isFinal(state.summary.status)) state.reconnect = setTimeout(connect, 1500);
  };
}

/** The run's files again, once it ended; false (and a notice) when they cannot be read. */
async function reloaded() {
  try {
    await loadDetail();
    return true;
  } catch (err) {
    toast(`Could not reload the run: ${messageOf(err)}`, "error");
    return false;
  }
}

// ---- actions ------------------------------------------------------------------------------------------
/** Charts and counters back to nothing, then the whole log again (a resumed run may have started its log over). */
async function reloadLog() {
  for (const chart of Object.values(charts)) chart.setSeries([]);
  Object.assign(state, { entries: 0, lastStep: null, lastEpoch: null, liveGrams: null });
  const log = await get(`/api/runs/${idPath(id)}/log`);
  for (const entry of log.entries || []) addEntry(entry);
  renderProgress();
}

$("#resume-button").addEventListener("click", async (e) => {
  const button = e.currentTarget;
  let job;
  state.refused = null;
  await busy(button, async () => {
    try {
      job = await post(`/api/runs/${idPath(id)}/resume`);
    } catch (err) {
      // A refusal (409) names the command that resumes the run where it was made: kept on the page to copy.
      if (err instanceof ApiError && err.status === 409) state.refused = messageOf(err);
      else toast(messageOf(err), "error");
    }
  });
  if (!job) {
    if (state.refused) renderSummary();
    return;
  }
  state.resuming = true;
  button.hidden = true;
  const notice = $("#run-notice");
  notice.innerHTML = '<span class="spinner"></span> Resuming from the last checkpoint…';
  notice.hidden = false;
  try {
    // Until the run's own process says it is running (or the job ends first).
    for (;;) {
      const [detail, current] = await Promise.all([get(`/api/runs/${idPath(id)}`), get(`/api/jobs/${encodeURIComponent(job.id)}`)]);
      if (detail.summary.status === "running") {
        state.detail = detail;
        state.summary = detail.summary;
        state.trainJob = current;
        break;
      }
      if (current.status !== "running") {
        notice.innerHTML = `<span class="bad-text">The resume ended (${esc(current.status)}${isNumber(current.returncode) ? `, exit ${esc(current.returncode)}` : ""}).</span>`;
        if (current.output_tail) notice.insertAdjacentHTML("beforeend", `<pre class="output">${esc(current.output_tail)}</pre>`);
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    renderDetail();
    await reloadLog();
    connect();
  } catch (err) {
    toast(messageOf(err), "error");
  } finally {
    state.resuming = false;
    $("#resume-button").hidden = !["stopped", "failed"].includes(state.summary?.status);
  }
});

$("#stop-button").addEventListener("click", async (e) => {
  const button = e.currentTarget;
  await busy(button, async () => {
    try {
      await post(`/api/runs/${idPath(id)}/stop`);
      toast("Stopping: the run ends at the next step, with a checkpoint kept.", "ok");
    } catch (err) {
      toast(messageOf(err), "error");
      if (err instanceof ApiError && err.status === 409) await refreshTrainJob(); // its job has ended meanwhile
    }
  });
});

$("#export-button").addEventListener("click", async (e) => {
  const button = e.currentTarget;
  const status = $("#export-status");
  const output = $("#export-output");
  await busy(button, async () => {
    try {
      status.innerHTML = '<span class="spinner"></span> exporting…';
      const job = await post(`/api/runs/${idPath(id)}/export`);
      const last = await pollJob(job.id, {
        onUpdate: (j) => {
          status.innerHTML = j.status === "running" ? '<span class="spinner"></span> exporting…' : "";
          if (j.output_tail) {
            output.textContent = j.output_tail;
            output.hidden = false;
          }
        },
      });
      status.dataset.status = last.status;
      status.innerHTML = last.status === "done"
        ? '<span class="ok-text">exported</span> (the ONNX model is in the run folder, <code>onnx/</code>)'
        : `<span class="bad-text">export ${esc(last.status)}</span>${isNumber(last.returncode) ? ` (exit ${esc(last.returncode)})` : ""}`;
    } catch (err) {
      status.dataset.status = "failed";
      status.innerHTML = `<span class="bad-text">${esc(messageOf(err))}</span>`;
    }
  });
});

pushForm({
  runId: () => id,
  noToken: '<span class="bad-text">No Hugging Face token set.</span> Set it on the <a href="/hub#token">Hub page</a>, then push again.',
});

// ---- start ----------------------------------------------------------------------------------------------
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether the run's folder is there yet: asked of the runs list, so that waiting requests no missing page. */
async function listed() {
  const runs = (await get("/api/runs")).runs || [];
  return runs.some((r) => r.id === id);
}

function jobFailed(job) {
  showError(`The run ended before its folder was written (job ${job.status}${isNumber(job.returncode) ? `, exit ${job.returncode}` : ""}).`);
  if (job.output_tail) {
    const pre = document.createElement("pre");
    pre.className = "output";
    pre.textContent = job.output_tail;
    errorBox.append(pre);
  }
}

/**
 * Waits for the run's folder: while the job New run started for it runs (its output shown meanwhile), or, with
 * no job known, for a few seconds (a run opened just as it starts). Resolves to whether the folder came.
 */
async function waitForRun() {
  const box = $("#run-waiting");
  const output = $("#run-waiting-output");
  box.hidden = false;
  try {
    for (let tries = 0; ; tries++) {
      let job = null;
      if (jobId) {
        try {
          job = await get(`/api/jobs/${encodeURIComponent(jobId)}`);
        } catch {
          job = null; // the studio restarted and forgot its jobs: wait as for any run
        }
        if (job?.output_tail) {
          output.textContent = job.output_tail;
          output.hidden = false;
        }
      }
      if (await listed()) return true;
      if (job && job.status !== "running") {
        jobFailed(job);
        return false;
      }
      if (!job && tries >= 10) {
        showError(`No run ${id} in the studio's folders.`);
        return false;
      }
      await pause(1000);
    }
  } catch (err) {
    showError(messageOf(err));
    return false;
  } finally {
    box.hidden = true;
  }
}

async function start() {
  if (!id) {
    showError("No run given (the address needs ?id=).");
    return;
  }
  try {
    if (jobId && !(await listed()) && !(await waitForRun())) return;
    try {
      await loadDetail();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404) || !(await waitForRun())) throw err;
      await loadDetail();
    }
  } catch (err) {
    if (errorBox.hidden) showError(messageOf(err));
    return;
  }
  view.hidden = false;
  try {
    const log = await get(`/api/runs/${idPath(id)}/log`);
    for (const entry of log.entries || []) addEntry(entry);
    renderProgress();
  } catch (err) {
    toast(`Could not read the run's log: ${messageOf(err)}`, "error");
  }
  if (!isFinal(state.summary.status)) connect();
}

start();
