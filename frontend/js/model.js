// One model's page: its facts, then the page of its kind (KIND_PAGES: the tabular form, the image
// uploader, the text box, the recommender); each kind's page shows predictions through the view of the model's task (tasks.js).
import { api } from "./api.js";
import { clear, errorBox, h, loading } from "./dom.js";
import { progressView, reportHref } from "./models.js";
import { renderCollab } from "./collab.js";
import { renderTabular } from "./tabular.js";
import { renderText } from "./text.js";
import { renderVision } from "./vision.js";

/** The page of each kind, keyed by the API's `kind` (tests read the keys of this table). */
export const KIND_PAGES = {
  tabular: renderTabular,
  vision: renderVision,
  text: renderText,
  collab: renderCollab,
};

export function modelHeader(detail, { page }) {
  const link = (href, text) => h("a", { class: "button secondary", href }, text);
  // The model's other pages: predict, report, monitor (each page links to the two it is not).
  const other = [
    page !== "predict" ? link(`#/models/${encodeURIComponent(detail.name)}`, "Predict") : null,
    page !== "report" ? link(reportHref(detail.name), "Report") : null,
    page !== "monitor" ? link(`#/models/${encodeURIComponent(detail.name)}/monitor`, "Monitor") : null,
  ];
  return h(
    "header",
    { class: "model-header" },
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Models"), " / "),
    h("h1", {}, detail.name, " ", h("span", { class: `badge status-${detail.status}` }, detail.status)),
    h(
      "p",
      { class: "meta" },
      [detail.kind, detail.task, detail.version && `version ${detail.version}`, detail.device].filter(Boolean).join(" · "),
      " ",
      detail.status === "ready" || page !== "predict" ? other : null,
    ),
    detail.description ? h("p", { class: "description" }, detail.description) : null,
    detail.error ? h("div", { class: "error", role: "alert" }, detail.error) : null,
  );
}

export async function fetchDetail(root, name, signal) {
  clear(root, loading(`Loading ${name}…`));
  try {
    return await api.model(name, { signal });
  } catch (err) {
    if (err.name !== "AbortError") clear(root, h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Models")), errorBox(err));
    return null;
  }
}

export async function renderModelPage(root, { name, signal }) {
  const detail = await fetchDetail(root, name, signal);
  if (!detail) return null;
  const body = h("div", { id: "model-body" });
  clear(root, modelHeader(detail, { page: "predict" }), body);
  if (detail.status === "loading") {
    body.append(h("p", { class: "hint" }, "This model is still loading. Reload the page in a moment."));
    return null;
  }
  if (detail.status === "training") {
    body.append(
      h("p", { class: "hint" }, "This model is still training; it can predict once it is ready (the models list updates by itself)."),
      progressView(detail),
    );
    return null;
  }
  if (detail.status !== "ready") return null;
  const page = Object.hasOwn(KIND_PAGES, detail.kind) ? KIND_PAGES[detail.kind] : null;
  if (page) return page(body, detail, { signal });
  body.append(errorBox(`this page cannot show models of kind ${detail.kind}; the API serves them (see API docs)`));
  return null;
}
