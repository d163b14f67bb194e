// New run page: a recipe's fields as a form; Validate, Estimate (a job, polled), Start (a job, then its run page).
// Only the fields changed from the recipe are sent, as overrides the way `--set path=value` takes them (read as
// YAML): numbers and text as typed, booleans true/false, lists as [a, b], a choice quoted where YAML would
// misread it ("no"), an emptied field as null.
// Ids for tests:
//   #recipe-select           the recipe picker (option value = recipe id; ?recipe=ID preselects)
//   #recipe-form             the form; each input/select/textarea has data-field="<dotted path>" and sits in
//                            .field[data-path="<dotted path>"] (.changed once edited)
//   .field-error             a 422's message, beside the field it names (inside that .field; data-error-for = path); a field not in the
//                            form: #form-error at the top of the form (then also .field-error, data-error-for = the
//                            path); any other failure: #form-error alone
//   #extra-overrides         other overrides, path=value a line
//   #validate-button, #estimate-button, #start-button, #reset-button (disabled, aria-busy while a request runs)
//   #validate-result         "ok" after a good validation
//   #estimate-result         time, kWh and g CO2eq once the estimate job is done (data-status = job status;
//                            #estimate-co2, #estimate-kwh, #estimate-time); #estimate-output: output while it runs
//   #estimate-cancel         stops the estimate job; #start-status, #start-output: a start that did not reach its run
import { ApiError, get, idPath, messageOf, pollJob, post } from "./api.js";
import { $, duration, esc, grams, isNumber, kwh, param, runHref } from "./format.js";

const select = $("#recipe-select");
const form = $("#recipe-form");
const sectionsBox = $("#form-sections");
const buttons = ["#validate-button", "#estimate-button", "#start-button"].map((s) => $(s));
const state = { recipe: null, fields: new Map(), estimateJob: null, running: false };

// ---- values ----------------------------------------------------------------------------------------------
const YAML_WORDS = /^(y|yes|n|no|true|false|on|off|null|~)$/i;
const PLAIN = /^[A-Za-z_][\w./@+-]*$/;
const NUMBERISH = /^[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?$/;

/** Text as YAML reads it back as the same string (quoted only where YAML would read something else). */
function yamlString(text) {
  return PLAIN.test(text) && !YAML_WORDS.test(text) ? text : JSON.stringify(text);
}

function yamlItem(text) {
  if (text !== "" && NUMBERISH.test(text) && /\d/.test(text)) return text;
  if (/^(true|false|null)$/.test(text)) return text;
  return yamlString(text);
}

/** What an input shows for a recipe value. */
function shown(field, value) {
  if (value === null || value === undefined) return field.type === "boolean" ? false : "";
  switch (field.type) {
    case "boolean":
      return Boolean(value);
    case "list":
      return Array.isArray(value) ? value.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(", ") : String(value);
    case "choice":
      return typeof value === "string" ? value : JSON.stringify(value);
    default:
      return typeof value === "object" ? JSON.stringify(value) : String(value);
  }
}

function current(entry) {
  const { field, input } = entry;
  if (field.type === "boolean") return input.checked;
  return input.value;
}

/** The override for a changed field, as `--set` takes it. */
function overrideText(entry) {
  const { field } = entry;
  const value = current(entry);
  if (field.type === "boolean") return value ? "true" : "false";
  const text = String(value).trim();
  if (text === "") return field.type === "list" ? "[]" : "null";
  switch (field.type) {
    case "number":
    case "integer":
      return text;
    case "list":
      return `[${text.split(",").map((s) => s.trim()).filter(Boolean).map(yamlItem).join(", ")}]`;
    case "choice": {
      const choice = (field.choices || []).find((c) => shown(field, c) === text);
      if (choice !== undefined && typeof choice !== "string") return JSON.stringify(choice);
      return yamlString(text);
    }
    default:
      return text; // as typed, as on the command line: a field that also takes a mapping gets YAML text
  }
}

function overrides() {
  const out = {};
  for (const [path, entry] of state.fields) if (entry.changed) out[path] = overrideText(entry);
  for (const line of $("#extra-overrides").value.split("\n")) {
    const text = line.trim();
    if (!text || text.startsWith("#")) continue;
    const eq = text.indexOf("=");
    if (eq <= 0) {
      throw new ApiError(`"${text}": an override is path=value`, { field: "__extra__" });
    }
    out[text.slice(0, eq).trim()] = text.slice(eq + 1).trim();
  }
  return out;
}

// ---- the form ----------------------------------------------------------------------------------------
const fieldId = (path) => `f-${path.replace(/[^\w-]/g, "-")}`;

function sectionOf(path, sections) {
  let best = null;
  for (const s of sections) if ((path === s || path.startsWith(`${s}.`)) && (!best || s.length > best.length)) best = s;
  if (best) return best;
  return path.includes(".") ? path.split(".")[0] : "general";
}

function inputHtml(field) {
  const id = fieldId(field.path);
  const common = `id="${id}" name="${esc(field.path)}" data-field="${esc(field.path)}" data-type="${esc(field.type)}" aria-describedby="${id}-help"`;
  const value = shown(field, field.value);
  switch (field.type) {
    case "boolean":
      return `<div class="check"><input type="checkbox" ${common}${value ? " checked" : ""}></div>`;
    case "choice": {
      const choices = (field.choices || []).map((c) => shown(field, c));
      if (!choices.includes(value)) choices.unshift(value);
      return `<select ${common}>${choices.map((c) => `<option value="${esc(c)}"${c === value ? " selected" : ""}>${c === "" ? "(not set)" : esc(c)}</option>`).join("")}</select>`;
    }
    case "number":
    case "integer":
      // Text, not type=number: what the person typed reaches the recipe's own validation and its message.
      return `<input type="text" ${common} inputmode="${field.type === "integer" ? "numeric" : "decimal"}" spellcheck="false" value="${esc(value)}">`;
    case "list":
      return `<input type="text" ${common} spellcheck="false" value="${esc(value)}" placeholder="comma separated">`;
    default:
      return `<input type="text" ${common} spellcheck="false" value="${esc(value)}">`;
  }
}

/** A description that ends as a sentence, so the default's note reads after it. */
const sentence = (text) => (!text ? "" : /[.!?:)]$/.test(text.trim()) ? text.trim() : `${text.trim()}.`);

function fieldHtml(field) {
  const id = fieldId(field.path);
  const name = field.path.split(".").at(-1);
  const defaultShown = field.default === undefined || field.default === null ? "" : String(shown(field, field.default));
  const defaultText = defaultShown === "" || (field.description || "").includes("Default") ? "" : `${field.description ? " " : ""}Default: ${defaultShown}.`;
  const label = `<label for="${id}" title="${esc(field.path)}">${esc(name)}${field.required ? ' <span aria-hidden="true" class="bad-text">*</span>' : ""} <code>${esc(field.path)}</code></label>`;
  return `<div class="field${field.type === "boolean" ? " checkbox-field" : ""}" data-path="${esc(field.path)}">
${label}
${inputHtml(field)}
<div class="help" id="${id}-help">${esc(sentence(field.description))}${esc(defaultText)}${field.type === "list" ? " Comma separated." : ""}</div>
</div>`;
}

function renderForm(recipe) {
  state.fields.clear();
  const sections = recipe.sections || [];
  const groups = new Map(["general", ...sections].map((s) => [s, []]));
  for (const field of recipe.fields || []) {
    const s = sectionOf(field.path, sections);
    if (!groups.has(s)) groups.set(s, []);
    groups.get(s).push(field);
  }
  sectionsBox.innerHTML = [...groups.entries()]
    .filter(([, fields]) => fields.length)
    .map(([name, fields]) => `<fieldset class="section" data-section="${esc(name)}"><legend>${esc(name)}</legend><div class="fields">${fields.map(fieldHtml).join("")}</div></fieldset>`)
    .join("") || '<p class="muted">This recipe has no fields to change.</p>';
  for (const field of recipe.fields || []) {
    const input = sectionsBox.querySelector(`#${CSS.escape(fieldId(field.path))}`);
    if (!input) continue;
    const entry = { field, input, initial: shown(field, field.value), changed: false, box: input.closest(".field") };
    state.fields.set(field.path, entry);
  }
  $("#extra-overrides").value = "";
  $("#recipe-yaml").textContent = recipe.yaml || "";
  $("#recipe-info").textContent = [recipe.task ? `task ${recipe.task}` : null, recipe.file || null].filter(Boolean).join(" · ");
  clearErrors();
  updateChanged();
}

function updateChanged() {
  let n = 0;
  for (const entry of state.fields.values()) {
    entry.changed = current(entry) !== entry.initial;
    entry.box.classList.toggle("changed", entry.changed);
    if (entry.changed) n += 1;
  }
  const extra = $("#extra-overrides").value.split("\n").filter((l) => l.trim() && !l.trim().startsWith("#")).length;
  const total = n + extra;
  $("#changed-count").textContent = total ? `${total} override${total === 1 ? "" : "s"}` : "the recipe as it is";
}

function clearErrors() {
  for (const el of form.querySelectorAll(".field .field-error")) el.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".has-error")) el.classList.remove("has-error");
  const top = $("#form-error");
  top.hidden = true;
  top.textContent = "";
  top.classList.remove("field-error");
  delete top.dataset.errorFor;
  $("#validate-result").innerHTML = "";
}

/** The form field a message begins with ("peft.target_modules.literal[...]: ..."), the longest such path. */
function fieldNamedIn(message) {
  let best = null;
  for (const path of state.fields.keys()) {
    if (message.startsWith(path) && /^[:.\[ ]/.test(message.slice(path.length)) && (!best || path.length > best.length)) best = path;
  }
  return best;
}

/** A failure beside the field it names (a 422), else at the top of the form. */
function showError(err) {
  let field = err instanceof ApiError ? err.field : null;
  let message = messageOf(err);
  let input = field ? form.querySelector(`[data-field="${CSS.escape(field)}"]`) : null;
  if (!input && err instanceof ApiError && err.status === 422) {
    // A field the server could not name ("recipe") but the message begins with.
    const named = fieldNamedIn(message);
    if (named) {
      field = named;
      input = state.fields.get(named).input;
    }
  }
  // The line names its field, as the command line's does.
  if (input && field !== "__extra__" && !message.includes(field.split(".").at(-1))) message = `${field}: ${message}`;
  if (input) {
    const box = input.closest(".field");
    const line = document.createElement("div");
    line.className = "field-error";
    line.id = `${input.id || "extra"}-error`;
    line.dataset.errorFor = field;
    line.setAttribute("role", "alert");
    line.textContent = message;
    box.append(line);
    box.classList.add("has-error");
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-errormessage", line.id);
    input.scrollIntoView({ block: "center", behavior: "smooth" });
    input.focus({ preventScroll: true });
    return;
  }
  const top = $("#form-error");
  top.textContent = message;
  if (field) {
    top.dataset.errorFor = field;
    top.classList.add("field-error"); // a field's error, for a field the form does not show
  }
  top.hidden = false;
  top.scrollIntoView({ block: "center", behavior: "smooth" });
}

/** Runs `work` with the action buttons disabled and `button` spinning. */
async function withBusy(button, work) {
  state.running = true;
  for (const b of buttons) b.disabled = true;
  button.setAttribute("aria-busy", "true");
  select.disabled = true;
  try {
    return await work();
  } finally {
    button.removeAttribute("aria-busy");
    state.running = false;
    select.disabled = false;
    for (const b of buttons) b.disabled = false;
    if (state.estimateJob) $("#estimate-button").disabled = true;
  }
}

function recipePath(suffix = "") {
  return `/api/recipes/${idPath(state.recipe.id)}${suffix}`;
}

// ---- actions ---------------------------------------------------------------------------------------------
async function validate() {
  clearErrors();
  await withBusy($("#validate-button"), async () => {
    try {
      const answer = await post(recipePath("/validate"), { overrides: overrides() });
      $("#validate-result").innerHTML = `<span class="ok-text">ok</span>${answer.run_id ? ` <span class="muted">→ run ${esc(answer.run_id)}</span>` : ""}`;
    } catch (err) {
      showError(err);
    }
  });
}

function estimateHtml(result) {
  const range = (key, fmt) => (result.low && result.high && isNumber(result.low[key]) && isNumber(result.high[key]) ? `${fmt(result.low[key])} – ${fmt(result.high[key])}` : "");
  const phases = result.phases && typeof result.phases === "object" ? Object.entries(result.phases) : [];
  return `<div class="estimate-box">
  <div class="stat co2"><div class="label">g CO2eq</div><div class="value" id="estimate-co2">${esc(grams(result.co2_g))}</div><small class="muted">${esc(range("co2_g", grams))}</small></div>
  <div class="stat"><div class="label">kWh</div><div class="value" id="estimate-kwh">${esc(kwh(result.kwh))}</div><small class="muted">${esc(range("kwh", kwh))}</small></div>
  <div class="stat"><div class="label">Time</div><div class="value" id="estimate-time">${esc(duration(result.wall_s))}</div><small class="muted">${esc(range("wall_s", duration))}</small></div>
</div>
${phases.length ? `<table class="compact"><thead><tr><th>phase</th><th class="num">time</th><th class="num">g</th></tr></thead><tbody>${phases
    .map(([name, p]) => `<tr title="${esc(p?.work || "")}"><td>${esc(name)}</td><td class="num">${esc(duration(p?.wall_s))}</td><td class="num">${esc(grams(p?.co2_g))}</td></tr>`)
    .join("")}</tbody></table>` : ""}`;
}

async function estimate() {
  clearErrors();
  const result = $("#estimate-result");
  const status = $("#estimate-status");
  const output = $("#estimate-output");
  const cancel = $("#estimate-cancel");
  let job;
  await withBusy($("#estimate-button"), async () => {
    try {
      job = await post(recipePath("/estimate"), { overrides: overrides() });
    } catch (err) {
      showError(err);
    }
  });
  if (!job) return;
  state.estimateJob = job.id;
  $("#estimate-button").disabled = true;
  $("#estimate-button").setAttribute("aria-busy", "true");
  result.hidden = true;
  result.dataset.status = "running";
  output.textContent = "";
  output.hidden = true;
  cancel.hidden = false;
  status.innerHTML = '<span class="spinner"></span> estimating: timing real steps on this machine…';
  try {
    const last = await pollJob(job.id, {
      onUpdate: (j) => {
        if (j.output_tail) {
          output.textContent = j.output_tail;
          output.hidden = j.status !== "running";
          output.scrollTop = output.scrollHeight;
        }
      },
    });
    result.dataset.status = last.status;
    if (last.status === "done" && last.result) {
      status.innerHTML = '<span class="ok-text">Estimate for the form as it is now.</span>';
      result.innerHTML = estimateHtml(last.result);
      result.hidden = false;
    } else {
      status.innerHTML = `<span class="bad-text">The estimate ${esc(last.status === "done" ? "gave no result" : last.status)}${isNumber(last.returncode) ? ` (exit ${esc(last.returncode)})` : ""}.</span>`;
      output.hidden = !output.textContent;
    }
  } catch (err) {
    status.innerHTML = `<span class="bad-text">${esc(messageOf(err))}</span>`;
  } finally {
    state.estimateJob = null;
    cancel.hidden = true;
    $("#estimate-button").removeAttribute("aria-busy");
    $("#estimate-button").disabled = state.running;
  }
}

/** The new run's page; the job that trains it rides along in sessionStorage (the page waits on it while the
 * run's folder is not there yet), so the address stays /run?id=<run id>. */
function openRun(job) {
  try {
    sessionStorage.setItem(`studio-job:${job.run_id}`, job.id);
  } catch {
    /* storage refused: the run page then waits a few seconds for the folder instead */
  }
  location.href = runHref(job.run_id);
}

async function start() {
  clearErrors();
  let job;
  await withBusy($("#start-button"), async () => {
    try {
      job = await post(recipePath("/train"), { overrides: overrides() });
    } catch (err) {
      showError(err);
    }
  });
  if (!job) return;
  if (job.run_id) {
    openRun(job);
    return;
  }
  // No run id known: follow the job here.
  const panel = $("#start-panel");
  const status = $("#start-status");
  const output = $("#start-output");
  panel.hidden = false;
  status.innerHTML = '<span class="spinner"></span> starting…';
  try {
    const last = await pollJob(job.id, {
      onUpdate: (j) => {
        if (j.run_id) openRun(j);
        if (j.output_tail) {
          output.textContent = j.output_tail;
          output.hidden = false;
        }
      },
    });
    status.innerHTML = `<span class="${last.status === "done" ? "ok-text" : "bad-text"}">train ${esc(last.status)}</span>`;
  } catch (err) {
    status.innerHTML = `<span class="bad-text">${esc(messageOf(err))}</span>`;
  }
}

async function loadRecipe(recipeId) {
  if (!recipeId) {
    $("#new-layout").hidden = true;
    return;
  }
  const errorBox = $("#recipes-error");
  errorBox.hidden = true;
  try {
    state.recipe = await get(`/api/recipes/${idPath(recipeId)}`);
  } catch (err) {
    errorBox.textContent = `Cannot open the recipe: ${messageOf(err)}`;
    errorBox.hidden = false;
    $("#new-layout").hidden = true;
    return;
  }
  renderForm(state.recipe);
  $("#estimate-result").hidden = true;
  $("#estimate-output").hidden = true;
  $("#new-layout").hidden = false;
  const url = new URL(location.href);
  url.searchParams.set("recipe", recipeId);
  history.replaceState(null, "", url);
}

async function init() {
  let recipes;
  try {
    recipes = (await get("/api/recipes")).recipes || [];
  } catch (err) {
    select.innerHTML = '<option value="">no recipes</option>';
    const box = $("#recipes-error");
    box.textContent = `Cannot list the recipes: ${messageOf(err)}`;
    box.hidden = false;
    return;
  }
  if (!recipes.length) {
    select.innerHTML = '<option value="">no recipes found</option>';
    $("#recipe-info").textContent = "Give the studio a folder of recipes: finetune-kit studio --recipes DIR";
    return;
  }
  const wanted = param("recipe");
  select.innerHTML = `<option value="">choose a recipe…</option>${recipes
    .map((r) => `<option value="${esc(r.id)}"${r.id === wanted ? " selected" : ""}>${esc(r.name || r.id)}${r.task ? ` · ${esc(r.task)}` : ""}${r.file ? ` (${esc(r.file)})` : ""}</option>`)
    .join("")}`;
  if (wanted && recipes.some((r) => r.id === wanted)) await loadRecipe(wanted);
  else if (wanted) {
    const box = $("#recipes-error");
    box.textContent = `No recipe ${wanted} in the studio's folders.`;
    box.hidden = false;
  }
}

select.addEventListener("change", () => loadRecipe(select.value));
form.addEventListener("input", (e) => {
  updateChanged();
  const box = e.target.closest(".field");
  if (box?.classList.contains("has-error")) {
    box.classList.remove("has-error");
    box.querySelector(".field-error")?.remove();
    e.target.removeAttribute("aria-invalid");
  }
  if (!$("#estimate-result").hidden) $("#estimate-status").innerHTML = '<span class="muted">The form changed since this estimate.</span>';
});
form.addEventListener("change", updateChanged);
form.addEventListener("submit", (e) => e.preventDefault());
$("#validate-button").addEventListener("click", validate);
$("#estimate-button").addEventListener("click", estimate);
$("#start-button").addEventListener("click", start);
$("#reset-button").addEventListener("click", () => state.recipe && renderForm(state.recipe));
$("#estimate-cancel").addEventListener("click", async () => {
  if (!state.estimateJob) return;
  try {
    await post(`/api/jobs/${encodeURIComponent(state.estimateJob)}/stop`);
  } catch (err) {
    $("#estimate-status").innerHTML = `<span class="bad-text">${esc(messageOf(err))}</span>`;
  }
});

init();
