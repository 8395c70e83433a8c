// The model picker: every model with its kind, task, status, version and device, and what its task
// answers with (classes, targets, points); a failed one shows why.
import { api } from "./api.js";
import { clear, errorBox, h, loading } from "./dom.js";
import { taskView } from "./tasks.js";

export const modelHref = (name) => `#/models/${encodeURIComponent(name)}`;
export const reportHref = (name) => `#/models/${encodeURIComponent(name)}/report`;

function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

function card(model) {
  const title =
    model.status === "ready"
      ? h("a", { href: modelHref(model.name) }, model.name)
      : h("span", {}, model.name);
  return h(
    "li",
    { class: `model-card status-${model.status}`, dataset: { model: model.name } },
    h("h3", {}, title, " ", statusBadge(model.status)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "kind"),
      h("dd", { class: "kind" }, model.kind || "unknown"),
      h("dt", {}, "task"),
      h("dd", { class: "task" }, model.task || "unknown"),
      h("dt", {}, "version"),
      h("dd", { class: "version" }, model.version || "—"),
      h("dt", {}, "device"),
      h("dd", { class: "device" }, model.device || "—"),
      (taskView(model)?.facts(model) ?? []).map(([term, value]) => [h("dt", {}, term), h("dd", { class: "outputs" }, value)]),
    ),
    model.error ? h("p", { class: "error model-error", role: "note" }, model.error) : null,
    h(
      "p",
      { class: "card-actions" },
      model.status === "ready" ? h("a", { class: "button", href: modelHref(model.name) }, "Predict") : null,
      h("a", { class: "button secondary", href: reportHref(model.name) }, "Report"),
    ),
  );
}

export async function renderModels(root, { signal }) {
  const list = h("div", { id: "model-list", "aria-live": "polite" }, loading("Loading models…"));
  clear(root, h("h1", {}, "Models"), list);
  // Poll while some model is still loading, so its status flips to ready (or failed) by itself.
  for (;;) {
    let models;
    try {
      ({ models } = await api.models({ signal }));
    } catch (err) {
      if (err.name !== "AbortError") clear(list, errorBox(err));
      return;
    }
    if (!models.length) {
      clear(list, h("p", { class: "empty" }, "No models in the store: put an exported learner in model_store/<name>/."));
      return;
    }
    const pending = models.some((m) => m.status === "loading");
    clear(
      list,
      h("ul", { class: "model-grid" }, models.map(card)),
      pending ? h("p", { class: "hint" }, "Some models are still loading; this list updates by itself.") : null,
    );
    if (!pending) return;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    if (signal.aborted) return;
  }
}
