// The model picker: every model with its kind, task, status, version and device, and what its task
// answers with (classes, targets, points); a failed one shows why.
import { api } from "./api.js";
import { clear, errorBox, h, loading, num } from "./dom.js";
import { taskView } from "./tasks.js";

export const modelHref = (name) => `#/models/${encodeURIComponent(name)}`;
export const reportHref = (name) => `#/models/${encodeURIComponent(name)}/report`;

function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

const isCount = (v) => typeof v === "number" && Number.isFinite(v) && v >= 0;

/**
 * A training model's progress, read defensively (whatever the server sends): {epoch, epochs} as a bar and
 * "epoch 3 of 8", a share in [0, 1] (or a percentage) as a bar, a string as it is, and any other plain
 * facts of the object as "name value"; nothing at all for a model without a progress.
 */
export function progressView(model) {
  const progress = model.progress;
  if (progress === undefined || progress === null || progress === "") return null;
  let value = null;
  let max = null;
  const words = [];
  if (typeof progress === "number" && isCount(progress)) {
    [value, max] = [Math.min(progress > 1 ? progress / 100 : progress, 1), 1];
    words.push(`${Math.round(value * 100)}%`);
  } else if (typeof progress === "object" && !Array.isArray(progress)) {
    const { epoch, epochs, ...rest } = progress;
    if (isCount(epoch) && isCount(epochs) && epochs > 0) {
      [value, max] = [Math.min(epoch, epochs), epochs];
      words.push(`epoch ${num(epoch)} of ${num(epochs)}`);
    } else if (isCount(epoch)) words.push(`epoch ${num(epoch)}`);
    for (const [key, v] of Object.entries(rest))
      if (["string", "number", "boolean"].includes(typeof v)) words.push(`${key.replaceAll("_", " ")} ${typeof v === "number" ? num(v) : v}`);
  } else words.push(String(progress));
  return h(
    "p",
    { class: "training-progress" },
    max !== null ? h("progress", { value: String(value), max: String(max), "aria-label": `training progress of ${model.name}` }) : null,
    h("span", { class: "progress-text" }, words.join(" · ")),
  );
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
    model.status === "training" ? progressView(model) : null,
    model.error ? h("p", { class: "error model-error", role: "note" }, model.error) : null,
    h(
      "p",
      { class: "card-actions" },
      model.status === "ready" ? h("a", { class: "button", href: modelHref(model.name) }, "Predict") : null,
      // A model in training has no learner yet, so nothing to report on either.
      model.status === "training" ? null : h("a", { class: "button secondary", href: reportHref(model.name) }, "Report"),
    ),
  );
}

export async function renderModels(root, { signal }) {
  const list = h("div", { id: "model-list", "aria-live": "polite" }, loading("Loading models…"));
  clear(root, h("h1", {}, "Models"), list);
  // Poll while some model is still loading or training, so its status flips to ready (or failed) by itself.
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
    const loadingNow = models.some((m) => m.status === "loading");
    const training = models.some((m) => m.status === "training");
    clear(
      list,
      h("ul", { class: "model-grid" }, models.map(card)),
      loadingNow || training
        ? h("p", { class: "hint", id: "models-pending" }, `Some models are still ${loadingNow ? "loading" : "training"}; this list updates by itself.`)
        : null,
    );
    if (!loadingNow && !training) return;
    // Training takes minutes, an epoch at a time: a slower poll is enough for it.
    await new Promise((resolve) => setTimeout(resolve, loadingNow ? 2000 : 4000));
    if (signal.aborted) return;
  }
}
