// Report page: the training report when the model has one (what a user looks at first, first: the loss
// curve, confusion matrix and top losses, then metrics, the test set and the history), and an evaluate form
// (labelled CSV for tabular; images + labels or a zip for vision).
import { api, apiUrl, enc } from "./api.js";
import { busy, clear, errorBox, h, loading, num, pct, table } from "./dom.js";
import { fetchDetail, modelHeader } from "./model.js";

const ARTIFACTS = [
  ["loss_curve", "Loss curve"],
  ["confusion_matrix", "Confusion matrix"],
  ["top_losses", "Top losses"],
];
const TOP_CONFUSED = 10; // the 10-class demo has ~80 confused pairs: the rest wait behind "Show all"

/** [actual, predicted, count] pairs, most first: the top ones listed, every pair one click away. */
function mostConfusedView(pairs) {
  if (!pairs || !pairs.length) return null;
  const ranked = [...pairs].sort((a, b) => b[2] - a[2]); // stable: ties keep the API's order
  const item = ([actual, predicted, count]) => h("li", {}, `${actual} predicted as ${predicted}: ${count}`);
  const rest = ranked.slice(TOP_CONFUSED);
  return h(
    "div",
    { class: "most-confused" },
    h("h4", {}, rest.length ? `Most confused (top ${TOP_CONFUSED} of ${ranked.length} pairs)` : "Most confused"),
    h("ol", { class: "top-pairs" }, ranked.slice(0, TOP_CONFUSED).map(item)),
    rest.length
      ? h(
          "details",
          { class: "all-pairs" },
          h("summary", {}, `Show all ${ranked.length} pairs`),
          h("ol", { start: TOP_CONFUSED + 1 }, rest.map(item)),
        )
      : null,
  );
}

/** An Evaluation (test set of the report, or the result of the evaluate form). */
export function evaluationView(evaluation, { id, title }) {
  const classes = Object.keys(evaluation.precision || {}).filter((c) => c !== "macro");
  const perClass = [...classes, ...("macro" in (evaluation.precision || {}) ? ["macro"] : [])].map((c) => [
    c,
    num(evaluation.precision?.[c]),
    num(evaluation.recall?.[c]),
    num(evaluation.f1?.[c]),
  ]);
  const cm = evaluation.confusion_matrix;
  return h(
    "section",
    { class: "evaluation", id },
    h("h3", {}, title),
    h(
      "p",
      { class: "headline" },
      "Accuracy ",
      h("strong", { class: "accuracy" }, pct(evaluation.accuracy)),
      ` on ${evaluation.n} item(s)`,
    ),
    perClass.length ? table(["class", "precision", "recall", "F1"], perClass, { caption: "Per class" }) : null,
    cm && cm.labels
      ? table(
          [h("span", {}, "actual ↓ / predicted →"), ...cm.labels],
          cm.matrix.map((row, i) => [h("strong", {}, cm.labels[i]), ...row.map(String)]),
          { caption: "Confusion matrix (counts)", className: "confusion" },
        )
      : null,
    mostConfusedView(evaluation.most_confused),
  );
}

function summaryView(report, detail) {
  const facts = [
    ["best epoch", report.best_epoch],
    ["stopped early", report.stopped_early === undefined ? undefined : report.stopped_early ? "yes" : "no"],
    ["seed", report.seed],
    ["augmented", report.augmented === undefined ? undefined : report.augmented ? "yes" : "no"],
    ["training time", typeof report.train_seconds === "number" ? `${num(report.train_seconds)} s` : undefined],
    ...Object.entries(detail.metrics || {}).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v]),
  ].filter(([, v]) => v !== undefined && v !== null);
  return table(
    ["metric", "value"],
    facts.map(([k, v]) => [k, typeof v === "number" ? num(v) : String(v)]),
    { caption: "Metrics", className: "metrics-table" },
  );
}

function historyView(history) {
  if (!history || !history.length) return null;
  const keys = [...new Set(history.flatMap((row) => Object.keys(row)))];
  return table(keys, history.map((row) => keys.map((k) => num(row[k]))), { caption: "History", className: "history" });
}

function artifactsView(report, name) {
  // The report names its artifacts; an older report without the map gets the contract's default paths.
  const artifacts = report.artifacts || Object.fromEntries(ARTIFACTS.map(([key]) => [key, `/api/v1/models/${enc(name)}/report/${key}.png`]));
  return h(
    "div",
    { class: "artifacts" },
    ARTIFACTS.map(([key, title]) => {
      const url = artifacts[key];
      if (!url) return h("figure", { class: "artifact missing" }, h("p", { class: "hint" }, `${title}: not in this report`));
      const img = h("img", { src: apiUrl(url), alt: `${title} of ${name}`, loading: "lazy", dataset: { artifact: key } });
      const figure = h("figure", { class: "artifact" }, img, h("figcaption", {}, title));
      img.addEventListener("error", () => img.replaceWith(h("p", { class: "hint" }, `${title}: not available`)), { once: true });
      return figure;
    }),
  );
}

function reportView(report, detail) {
  return h(
    "div",
    { id: "report" },
    artifactsView(report, detail.name),
    summaryView(report, detail),
    report.test ? evaluationView(report.test, { id: "report-test", title: "Held-out test set" }) : null,
    historyView(report.history),
    report.datablock_summary
      ? h("details", {}, h("summary", {}, "DataBlock summary"), h("pre", {}, report.datablock_summary))
      : null,
  );
}

/** Picks for each chosen image the class its file name starts with (cat_01.png → cat), if any. */
function guessLabel(filename, classes) {
  const lower = filename.toLowerCase();
  return classes.find((c) => lower.startsWith(c.toLowerCase())) || classes[0] || "";
}

function visionEvaluateFields(detail) {
  const classes = detail.classes || [];
  const files = h("input", { id: "eval-files", type: "file", multiple: true, accept: "image/*" });
  const labels = h("ol", { id: "eval-labels", class: "label-list" });
  const archive = h("input", { id: "eval-archive", type: "file", accept: ".zip,application/zip" });
  files.addEventListener("change", () =>
    clear(
      labels,
      [...files.files].map((file, i) => {
        const id = `eval-label-${i}`;
        const select = h("select", { id, dataset: { file: file.name } }, classes.map((c) => h("option", { value: c }, c)));
        select.value = guessLabel(file.name, classes);
        return h("li", { class: "field inline" }, h("label", { for: id }, file.name), select);
      }),
    ),
  );
  const fields = h(
    "div",
    {},
    h("div", { class: "field" }, h("label", { for: "eval-files" }, "Images"), files),
    labels,
    h("p", { class: "or" }, "or"),
    h("div", { class: "field" }, h("label", { for: "eval-archive" }, "A zip with one folder per class"), archive),
  );
  const build = () => {
    const form = new FormData();
    if (archive.files.length) {
      form.append("archive", archive.files[0], archive.files[0].name);
      return form;
    }
    if (!files.files.length) return null;
    const selects = labels.querySelectorAll("select");
    [...files.files].forEach((file, i) => form.append("files", file, file.name));
    for (const select of selects) form.append("labels", select.value);
    return form;
  };
  return { fields, build };
}

function tabularEvaluateFields(detail) {
  const target = detail.input_schema?.target;
  const file = h("input", { id: "eval-csv", type: "file", accept: ".csv,text/csv", "aria-describedby": "eval-csv-hint" });
  const fields = h(
    "div",
    { class: "field" },
    h("label", { for: "eval-csv" }, "Labelled CSV"),
    file,
    h("span", { class: "hint", id: "eval-csv-hint" }, target ? `It must include the target column "${target}".` : "It must include the target column."),
  );
  const build = () => {
    if (!file.files.length) return null;
    const form = new FormData();
    form.append("file", file.files[0], file.files[0].name);
    return form;
  };
  return { fields, build };
}

function evaluateForm(detail, signal) {
  const { fields, build } = detail.kind === "vision" ? visionEvaluateFields(detail) : tabularEvaluateFields(detail);
  const result = h("div", { class: "result", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Evaluate");
  const form = h("form", { id: "evaluate-form" }, fields, h("p", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = build();
    if (!body) {
      clear(result, errorBox("choose a file first"));
      return;
    }
    clear(result, loading("Evaluating…"));
    try {
      const evaluation = await busy(result, submit, api.evaluate(detail.kind, detail.name, body, { signal }));
      clear(result, evaluationView(evaluation, { id: "evaluation-result", title: "Evaluation" }));
    } catch (err) {
      if (err.name !== "AbortError") clear(result, errorBox(err));
    }
  });
  return h(
    "section",
    { id: "evaluate", "aria-labelledby": "evaluate-title" },
    h("h2", { id: "evaluate-title" }, "Evaluate on your own labelled data"),
    form,
    result,
  );
}

export async function renderReport(root, { name, signal }) {
  const detail = await fetchDetail(root, name, signal);
  if (!detail) return null;
  const reportSlot = h("div", { id: "report-slot", "aria-live": "polite" }, loading("Loading the report…"));
  clear(
    root,
    modelHeader(detail, { page: "report" }),
    h("section", { "aria-labelledby": "report-title" }, h("h2", { id: "report-title" }, "Training report"), reportSlot),
    detail.status === "ready" ? evaluateForm(detail, signal) : null,
  );
  try {
    const report = await api.report(name, { signal });
    clear(
      reportSlot,
      report
        ? reportView(report, detail)
        : h("p", { class: "empty", id: "no-report" }, "No report: this model was not trained with a report (or reports are not available on this server)."),
      report || !Object.keys(detail.metrics || {}).length ? null : summaryView({}, detail),
    );
  } catch (err) {
    if (err.name !== "AbortError") clear(reportSlot, errorBox(err));
  }
  return null;
}
