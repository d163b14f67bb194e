// Hub page: search the Hub by stated g CO2eq; set or forget the Hub token (never shown back); push a run.
// Ids for tests:
//   #hub-search-form: #hub-max-co2, #hub-min-co2, #hub-task, #hub-author, #hub-sort, #hub-limit, #hub-search
//   #hub-results             the results table; rows tr[data-model-id]; #hub-status (how many scanned), #hub-error
//   #hub-token-input (password), #hub-token-save, #hub-token-forget, #hub-token-status ("token set for <user>" or
//                            "no token set"; data-set="true|false"), #hub-token-error
//   #push-run (finished runs), #push-repo, #push-private, #push-button, #push-result
import { del, get, messageOf, post } from "./api.js";
import { $, DASH, busy, esc, grams, num } from "./format.js";
import { pushForm } from "./push.js";

// ---- search ------------------------------------------------------------------------------------------
function resultRow(m) {
  const id = m.model_id ?? m.id ?? "";
  const url = m.url || `https://huggingface.co/${id.split("/").map(encodeURIComponent).join("/")}`;
  return `<tr data-model-id="${esc(id)}">
<td><a href="${esc(url)}" target="_blank" rel="noopener noreferrer" class="run-name">${esc(id)}</a></td>
<td class="num co2">${esc(grams(m.emissions_g ?? m.co2_g))}</td>
<td class="num">${esc(num(m.downloads))}</td>
<td class="num likes">${esc(num(m.likes))}</td>
<td>${esc(m.task || m.pipeline_tag || DASH)}</td>
<td>${esc(m.metric || DASH)}</td>
<td>${esc(m.source || DASH)}</td>
<td><a href="${esc(url)}" target="_blank" rel="noopener noreferrer">open ↗</a></td>
</tr>`;
}

$("#hub-search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const errorBox = $("#hub-error");
  const status = $("#hub-status");
  const table = $("#hub-results");
  errorBox.hidden = true;
  const params = new URLSearchParams();
  const put = (name, selector) => {
    const value = $(selector).value.trim();
    if (value !== "") params.set(name, value);
  };
  put("max_co2", "#hub-max-co2");
  put("min_co2", "#hub-min-co2");
  put("task", "#hub-task");
  put("author", "#hub-author");
  put("sort", "#hub-sort");
  put("limit", "#hub-limit");
  if (!params.has("max_co2")) {
    errorBox.textContent = "Give the most g CO2eq a model may state.";
    errorBox.hidden = false;
    return;
  }
  await busy($("#hub-search"), async () => {
    status.innerHTML = '<span class="spinner"></span> reading model cards on the Hub…';
    try {
      const answer = await get(`/api/hub/search?${params}`);
      const models = answer.models || [];
      // Likes only when the answer carries them.
      const likes = models.some((m) => typeof m.likes === "number");
      table.classList.toggle("no-likes", !likes);
      $("#hub-results-body").innerHTML = models.length
        ? models.map(resultRow).join("")
        : '<tr class="empty-row"><td colspan="8">No model states emissions in that range.</td></tr>';
      table.hidden = false;
      const without = answer.without_emissions;
      status.textContent = `${models.length} model${models.length === 1 ? "" : "s"} from ${answer.scanned ?? "?"} scanned${typeof without === "number" ? ` (${without} state no emissions)` : ""}.`;
    } catch (err) {
      status.textContent = "";
      errorBox.textContent = messageOf(err);
      errorBox.hidden = false;
    }
  });
});

// ---- token -------------------------------------------------------------------------------------------
function showToken(answer) {
  const status = $("#hub-token-status");
  const set = Boolean(answer && answer.set);
  status.dataset.set = String(set);
  status.innerHTML = set
    ? `<span class="ok-text">token set${answer.user ? ` for ${esc(answer.user)}` : ""}</span>`
    : '<span class="muted">no token set</span>';
  $("#hub-token-forget").disabled = !set;
}

function tokenError(err) {
  const box = $("#hub-token-error");
  box.textContent = err ? messageOf(err) : "";
  box.hidden = !err;
}

$("#hub-token-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const field = $("#hub-token-input");
  const token = field.value.trim();
  if (!token) {
    tokenError(new Error("Paste a Hugging Face token (Settings, Access Tokens, with write access to push)."));
    return;
  }
  tokenError(null);
  await busy([$("#hub-token-save"), $("#hub-token-forget")], async () => {
    try {
      showToken(await post("/api/hub/token", { token }));
    } catch (err) {
      tokenError(err);
    } finally {
      field.value = ""; // the token leaves the page at once, whatever the answer
    }
  });
  $("#hub-token-forget").disabled = $("#hub-token-status").dataset.set !== "true";
});

$("#hub-token-forget").addEventListener("click", async () => {
  tokenError(null);
  await busy([$("#hub-token-forget"), $("#hub-token-save")], async () => {
    try {
      const answer = await del("/api/hub/token");
      showToken(answer && typeof answer === "object" && "set" in answer ? answer : { set: false });
    } catch (err) {
      tokenError(err);
    }
  });
  $("#hub-token-forget").disabled = $("#hub-token-status").dataset.set !== "true";
});

// ---- push --------------------------------------------------------------------------------------------
pushForm({
  runId: () => $("#push-run").value,
  noToken: '<span class="bad-text">No Hugging Face token set: set it above, then push again.</span>',
});

async function init() {
  get("/api/hub/token").then(showToken, (err) => {
    $("#hub-token-status").textContent = "unknown";
    tokenError(err);
  });
  try {
    const runs = ((await get("/api/runs")).runs || []).filter((r) => ["finished", "stopped on budget"].includes(r.status));
    const wanted = new URLSearchParams(location.search).get("run");
    $("#push-run").innerHTML = runs.length
      ? runs.map((r) => `<option value="${esc(r.id)}"${r.id === wanted ? " selected" : ""}>${esc(r.name)} · ${esc(grams(r.emissions_g))} g (${esc(r.folder)})</option>`).join("")
      : '<option value="">no finished run</option>';
  } catch (err) {
    $("#push-run").innerHTML = '<option value="">cannot list runs</option>';
    $("#push-result").innerHTML = `<span class="bad-text">${esc(messageOf(err))}</span>`;
  }
}

init();
