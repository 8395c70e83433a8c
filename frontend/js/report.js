// Report page: the training report when the model has one (what a user looks at first, first: the loss
// curve and the plots of the model's task, then metrics, the test set and the history), and an evaluate form
// (labelled CSV for tabular; images + labels or a zip for vision). What is shown depends on the task, looked
// up in the tables below (never by asking which kind or task it is).
import { api, apiUrl, enc } from "./api.js";
import { busy, clear, errorBox, h, loading, num, pct, table } from "./dom.js";
import { fetchDetail, modelHeader } from "./model.js";

// Every plot a report may hold, in the order the page shows them.
const ARTIFACTS = [
  ["loss_curve", "Loss curve"],
  ["confusion_matrix", "Confusion matrix"],
  ["per_class_scores", "Precision, recall and F1 per class"],
  ["f1_vs_threshold", "F1 against the threshold"],
  ["predicted_vs_actual", "Predicted vs actual"],
  ["residuals", "Residuals"],
  ["top_losses", "Top losses"],
  ["per_class_iou", "IoU per class"],
  ["sample_overlays", "Predicted masks over test images"],
];
// The plots each task's report has (a missing one says so); a report made before tasks is a classifier's.
const TASK_ARTIFACTS = {
  classification: ["loss_curve", "confusion_matrix", "top_losses"],
  multi_label: ["loss_curve", "per_class_scores", "f1_vs_threshold", "top_losses"],
  regression: ["loss_curve", "predicted_vs_actual", "residuals", "top_losses"],
  points: ["loss_curve", "top_losses"],
  segmentation: ["loss_curve", "per_class_iou", "sample_overlays"],
  rating: ["loss_curve", "predicted_vs_actual"],
};
const DEFAULT_TASK = "classification";
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

/** P/R/F1 rows: each class, then the averages the evaluation has (micro, macro). */
function scoreRows(evaluation) {
  const averages = ["micro", "macro"];
  const keys = Object.keys(evaluation.precision || {});
  const names = [...keys.filter((c) => !averages.includes(c)), ...averages.filter((a) => keys.includes(a))];
  return names.map((c) => [
    averages.includes(c) ? h("em", {}, c) : c,
    num(evaluation.precision?.[c]),
    num(evaluation.recall?.[c]),
    num(evaluation.f1?.[c]),
  ]);
}

function headline(...parts) {
  return h("p", { class: "headline" }, ...parts);
}

function classificationView(evaluation) {
  const perClass = scoreRows(evaluation);
  const cm = evaluation.confusion_matrix;
  return [
    headline("Accuracy ", h("strong", { class: "accuracy" }, pct(evaluation.accuracy)), ` on ${evaluation.n} item(s)`),
    perClass.length ? table(["class", "precision", "recall", "F1"], perClass, { caption: "Per class" }) : null,
    cm && cm.labels
      ? table(
          [h("span", {}, "actual ↓ / predicted →"), ...cm.labels],
          cm.matrix.map((row, i) => [h("strong", {}, cm.labels[i]), ...row.map(String)]),
          { caption: "Confusion matrix (counts)", className: "confusion" },
        )
      : null,
    mostConfusedView(evaluation.most_confused),
  ];
}

function multiLabelView(evaluation) {
  return [
    headline(
      "accuracy_multi ",
      h("strong", { class: "accuracy-multi" }, pct(evaluation.accuracy_multi)),
      ` on ${evaluation.n} item(s), threshold ${num(evaluation.threshold)}`,
    ),
    table(["class", "precision", "recall", "F1"], scoreRows(evaluation), {
      caption: "Per class, micro and macro averages",
      className: "multi-label-scores",
    }),
  ];
}

function regressionView(evaluation) {
  const rows = Object.entries(evaluation.targets || {}).map(([target, s]) => [
    target,
    num(s.rmse),
    num(s.mae),
    num(s.r2),
  ]);
  return [
    headline(`${evaluation.n} item(s), ${rows.length} target(s)`),
    table(["target", "RMSE", "MAE", "R²"], rows, { caption: "Per target (in its own units)", className: "regression-scores" }),
  ];
}

function pointsView(evaluation) {
  return [
    headline(
      "Mean pixel error ",
      h("strong", { class: "pixel-error" }, `${num(evaluation.mean_pixel_error)} px`),
      ` on ${evaluation.n} image(s)`,
    ),
  ];
}

function segmentationView(evaluation) {
  const classes = Object.keys(evaluation.iou || {}).filter((c) => c !== "mean");
  return [
    headline(
      "Pixel accuracy ",
      h("strong", { class: "pixel-accuracy" }, pct(evaluation.pixel_accuracy)),
      ", mean IoU ",
      h("strong", { class: "mean-iou" }, num(evaluation.iou?.mean)),
      ` on ${evaluation.n} image(s)`,
    ),
    table(
      ["class", "IoU", "Dice"],
      [
        ...classes.map((c) => [c, num(evaluation.iou[c]), num(evaluation.dice?.[c])]),
        [h("em", {}, "mean"), num(evaluation.iou?.mean), num(evaluation.dice?.mean)],
      ],
      { caption: "Per class present (in the masks or the predictions)", className: "segmentation-scores" },
    ),
  ];
}

function ratingView(evaluation) {
  return [
    headline(
      "RMSE ",
      h("strong", { class: "rmse" }, num(evaluation.rmse)),
      ", MAE ",
      h("strong", { class: "mae" }, num(evaluation.mae)),
      ` on ${evaluation.n} pair(s) the model knows`,
    ),
    evaluation.unknown
      ? h("p", { class: "hint unknown-pairs" }, `${evaluation.unknown} pair(s) with a user or item the model does not know: not scored.`)
      : null,
  ];
}

// An Evaluation's task, by the field only that task's Evaluation has; classification has none of them.
const EVALUATION_MARKS = [
  ["regression", "targets"],
  ["multi_label", "accuracy_multi"],
  ["points", "mean_pixel_error"],
  ["segmentation", "pixel_accuracy"],
  ["rating", "unknown"],
];
const EVALUATION_VIEWS = {
  classification: classificationView,
  multi_label: multiLabelView,
  regression: regressionView,
  points: pointsView,
  segmentation: segmentationView,
  rating: ratingView,
};

function evaluationTask(evaluation) {
  const mark = EVALUATION_MARKS.find(([, field]) => field in evaluation);
  return mark ? mark[0] : DEFAULT_TASK;
}

/** An Evaluation of any task (test set of the report, or the result of the evaluate form). */
export function evaluationView(evaluation, { id, title }) {
  const task = evaluationTask(evaluation);
  return h(
    "section",
    { class: "evaluation", id, dataset: { task } },
    h("h3", {}, title),
    EVALUATION_VIEWS[task](evaluation),
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

function artifactsView(report, detail) {
  const name = detail.name;
  const task = report.task || detail.task || DEFAULT_TASK;
  // The report names its artifacts; an older report without the map gets the contract's default paths.
  const artifacts =
    report.artifacts ||
    Object.fromEntries(TASK_ARTIFACTS[DEFAULT_TASK].map((key) => [key, `/api/v1/models/${enc(name)}/report/${key}.png`]));
  const expected = TASK_ARTIFACTS[task] || TASK_ARTIFACTS[DEFAULT_TASK];
  const shown = ARTIFACTS.filter(([key]) => expected.includes(key) || artifacts[key]);
  return h(
    "div",
    { class: "artifacts" },
    shown.map(([key, title]) => {
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
    artifactsView(report, detail),
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

// Per task: the control that labels one image, and what it sends as that image's `labels` field.
function classControl(detail, file, id) {
  const classes = detail.classes || [];
  const select = h("select", { id, dataset: { file: file.name } }, classes.map((c) => h("option", { value: c }, c)));
  select.value = guessLabel(file.name, classes);
  return { control: select, value: () => select.value };
}

function classesControl(detail, file, id) {
  const classes = detail.classes || [];
  const select = h(
    "select",
    { id, multiple: true, size: Math.min(classes.length, 4), dataset: { file: file.name } },
    classes.map((c) => h("option", { value: c }, c)),
  );
  // Sent as the API takes them: the chosen classes joined by ";" (none chosen: no class).
  return { control: select, value: () => [...select.selectedOptions].map((o) => o.value).join(";") };
}

function textControl(placeholder) {
  return (detail, file, id) => {
    const input = h("input", { id, type: "text", placeholder, required: true, dataset: { file: file.name } });
    return { control: input, value: () => input.value.trim() };
  };
}

function maskControl(detail, file, id) {
  const input = h("input", { id, type: "file", accept: "image/png", required: true, dataset: { file: file.name } });
  return { control: input, value: () => input.files[0] ?? new Blob([]) };
}

const LABEL_CONTROLS = {
  classification: { make: classControl, hint: "Its class." },
  multi_label: { make: classesControl, hint: "Its classes (choose several, or none)." },
  regression: {
    make: textControl("40 or [1.5, 2.0]"),
    hint: (detail) => `Its value(s) of ${(detail.targets || []).join(", ") || "the targets"}: a number, or a JSON list in that order.`,
  },
  points: { make: textControl("[[x, y], ...]"), hint: "Its points as JSON [[x, y], ...] in the image's pixels." },
  segmentation: {
    make: maskControl,
    hint: "Its mask: a PNG of the image's size, one class index per pixel.",
    field: "masks",
  },
};
// Only a classifier's labels can come as a zip with a folder per class.
const ARCHIVE_TASKS = ["classification"];

function visionEvaluateFields(detail) {
  const task = detail.task || DEFAULT_TASK;
  const labelling = LABEL_CONTROLS[task] || LABEL_CONTROLS[DEFAULT_TASK];
  const hint = typeof labelling.hint === "function" ? labelling.hint(detail) : labelling.hint;
  const files = h("input", { id: "eval-files", type: "file", multiple: true, accept: "image/*" });
  const labels = h("ol", { id: "eval-labels", class: "label-list", dataset: { task } });
  const archive = ARCHIVE_TASKS.includes(task)
    ? h("input", { id: "eval-archive", type: "file", accept: ".zip,application/zip" })
    : null;
  let values = [];
  files.addEventListener("change", () => {
    const controls = [...files.files].map((file, i) => ({ file, ...labelling.make(detail, file, `eval-label-${i}`) }));
    values = controls.map((c) => c.value);
    clear(
      labels,
      controls.map(({ file, control }) =>
        h("li", { class: "field inline" }, h("label", { for: control.id }, file.name), control),
      ),
    );
  });
  const fields = h(
    "div",
    {},
    h("div", { class: "field" }, h("label", { for: "eval-files" }, "Images"), files),
    h("p", { class: "hint", id: "eval-labels-hint" }, `For each image: ${hint[0].toLowerCase()}${hint.slice(1)}`),
    labels,
    archive ? h("p", { class: "or" }, "or") : null,
    archive
      ? h("div", { class: "field" }, h("label", { for: "eval-archive" }, "A zip with one folder per class"), archive)
      : null,
  );
  const build = () => {
    const form = new FormData();
    if (archive && archive.files.length) {
      form.append("archive", archive.files[0], archive.files[0].name);
      return form;
    }
    if (!files.files.length) return null;
    [...files.files].forEach((file) => form.append("files", file, file.name));
    // Each image's label goes in the field its task's evaluate takes (a mask file: `masks`).
    for (const value of values) form.append(labelling.field || "labels", value());
    return form;
  };
  return { fields, build };
}

// Per task: what a labelled CSV for a tabular model must hold.
const CSV_HINTS = {
  classification: (targets) => `It must include the target column "${targets[0]}".`,
  multi_label: (targets) => `It must include one true/false (or 1/0) column per class: ${targets.join(", ")}.`,
  regression: (targets) => `It must include the numeric target column(s) ${targets.map((t) => `"${t}"`).join(", ")}.`,
};

function tabularEvaluateFields(detail) {
  const schema = detail.input_schema || {};
  const targets = schema.targets?.length ? schema.targets : schema.target ? [schema.target] : [];
  const task = detail.task || DEFAULT_TASK;
  const hint = targets.length && CSV_HINTS[task] ? CSV_HINTS[task](targets) : "It must include the target column(s).";
  const file = h("input", { id: "eval-csv", type: "file", accept: ".csv,text/csv", "aria-describedby": "eval-csv-hint" });
  const fields = h(
    "div",
    { class: "field" },
    h("label", { for: "eval-csv" }, "Labelled CSV"),
    file,
    h("span", { class: "hint", id: "eval-csv-hint" }, hint),
  );
  const build = () => {
    if (!file.files.length) return null;
    const form = new FormData();
    form.append("file", file.files[0], file.files[0].name);
    return form;
  };
  return { fields, build };
}

/** A labelled CSV for the kinds that read one (text: texts and their targets; collab: rated pairs). */
function csvEvaluateFields(hintOf) {
  return (detail) => {
    const file = h("input", { id: "eval-csv", type: "file", accept: ".csv,text/csv", "aria-describedby": "eval-csv-hint" });
    const fields = h(
      "div",
      { class: "field" },
      h("label", { for: "eval-csv" }, "Labelled CSV"),
      file,
      h("span", { class: "hint", id: "eval-csv-hint" }, hintOf(detail)),
    );
    const build = () => {
      if (!file.files.length) return null;
      const form = new FormData();
      form.append("file", file.files[0], file.files[0].name);
      return form;
    };
    return { fields, build };
  };
}

const textEvaluateFields = csvEvaluateFields(
  () => "A text column (text) and the target column the learner was trained on (labels joined by ; for several).",
);
const collabEvaluateFields = csvEvaluateFields((detail) => {
  const schema = detail.input_schema || {};
  const [user, item] = [schema.user?.name || "user", schema.item?.name || "item"];
  const rating = detail.targets?.[0] || "rating";
  return `The columns ${user}, ${item} and ${rating}; pairs with an id the model does not know are counted apart.`;
});

// Per kind: the evaluate form's fields (a kind without an evaluate endpoint here gets no form).
const EVALUATE_FIELDS = {
  tabular: tabularEvaluateFields,
  vision: visionEvaluateFields,
  text: textEvaluateFields,
  collab: collabEvaluateFields,
};

function evaluateForm(detail, signal) {
  const makeFields = EVALUATE_FIELDS[detail.kind];
  if (!makeFields) return null;
  const { fields, build } = makeFields(detail);
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
