// The push form, on the Run page and the Hub page: #push-form with #push-repo, #push-private, #push-button and
// #push-result. POST /api/runs/{id}/push {repo_id, private}; the Hub token is the one set on the Hub page.
import { ApiError, idPath, messageOf, post } from "./api.js";
import { $, busy, esc } from "./format.js";

/**
 * Sends the form's push for the run `runId()` names. `noToken`: the HTML shown when the studio has no Hub token
 * (where to set it, from this page).
 */
export function pushForm({ runId, noToken }) {
  $("#push-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const result = $("#push-result");
    const run = runId();
    const repo = $("#push-repo").value.trim();
    if (!run || !repo) {
      result.innerHTML = `<span class="bad-text">${run ? "Give a repository (user/name)." : "Choose a run and a repository (user/name)."}</span>`;
      return;
    }
    await busy([$("#push-button"), $("#push-repo")], async () => {
      result.innerHTML = '<span class="spinner"></span> pushing…';
      try {
        const answer = await post(`/api/runs/${idPath(run)}/push`, { repo_id: repo, private: $("#push-private").checked });
        result.innerHTML = `<span class="ok-text">pushed</span>: <a href="${esc(answer.url)}" target="_blank" rel="noopener noreferrer">${esc(answer.url)}</a>`;
      } catch (err) {
        result.innerHTML = err instanceof ApiError && err.status === 401 ? noToken : `<span class="bad-text">${esc(messageOf(err))}</span>`;
      }
    });
  });
}
