// Tabular page: a form generated from the model's input_schema (one control per column), and a CSV mode.
// What a prediction looks like, and the controls a request takes, come from the view of the model's task.
import { api, ApiError } from "./api.js";
import { parseCsv } from "./csv.js";
import { busy, clear, errorBox, h, modeTabs, num, table } from "./dom.js";
import { rowExplainer } from "./explain.js";
import { taskView } from "./tasks.js";

const MISSING = "";
const SHOWN_ROWS = 200;

/** One labelled control for one schema column: a select (categorical) or a number input (continuous). */
function control(column, index) {
  const id = `col-${index}`;
  const common = { id, name: column.name, dataset: { column: column.name, type: column.type } };
  if (column.type === "categorical") {
    const select = h(
      "select",
      common,
      column.categories.map((c) => h("option", { value: c }, c)),
      h("option", { value: MISSING }, "(missing)"),
    );
    return h(
      "div",
      { class: "field" },
      h("label", { for: id }, column.name),
      select,
      h("span", { class: "hint", id: `${id}-hint` }, `${column.categories.length} categories`),
    );
  }
  const mean = typeof column.mean === "number" ? num(column.mean, 6) : "";
  const hint = [
    mean !== "" && `training mean ${num(column.mean)}`,
    typeof column.std === "number" && `std ${num(column.std)}`,
    column.nullable ? "may be left empty" : "required",
  ]
    .filter(Boolean)
    .join(" · ");
  const input = h("input", {
    ...common,
    type: "number",
    step: "any",
    inputmode: "decimal",
    placeholder: mean,
    required: !column.nullable,
    "aria-describedby": `${id}-hint`,
    dataset: { ...common.dataset, mean: column.mean ?? "" },
  });
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, column.name, column.nullable ? null : h("span", { class: "req", "aria-hidden": "true" }, " *")),
    input,
    h("span", { class: "hint", id: `${id}-hint` }, hint),
  );
}

function rowFrom(form, columns) {
  const row = {};
  for (const column of columns) {
    const value = form.elements.namedItem(column.name).value;
    if (column.type === "continuous") row[column.name] = value.trim() === "" ? null : Number(value);
    else row[column.name] = value === MISSING ? null : value;
  }
  return row;
}

function markInvalid(form, err) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  if (!(err instanceof ApiError)) return;
  for (const e of err.errors) {
    const column = (e.loc || []).find((part) => form.elements.namedItem(String(part)));
    if (column !== undefined) form.elements.namedItem(String(column)).setAttribute("aria-invalid", "true");
  }
}

function predictionView(view, prediction, explainer) {
  return h(
    "div",
    { class: "prediction", id: "tabular-prediction" },
    view.row(prediction),
    explainer,
    prediction.warnings.length
      ? h(
          "div",
          { class: "warnings" },
          h("h3", {}, "Warnings"),
          h("ul", {}, prediction.warnings.map((w) => h("li", { class: "warning" }, w))),
        )
      : h("p", { class: "hint" }, "No warnings for this row."),
  );
}

/** The task's own request controls (e.g. a multi-label threshold), or nothing. */
export function controlsLine(controls) {
  return controls.length ? h("p", { class: "inline-field task-controls" }, controls.map((c) => c.el)) : null;
}

export const queryOf = (controls) => Object.assign({}, ...controls.map((c) => c.query()));

function rowForm(view, detail, signal) {
  const { columns } = detail.input_schema;
  const result = h("div", { class: "result", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Predict");
  const controls = view.controls(detail, { place: "row", id: "row-" });
  const form = h(
    "form",
    { id: "tabular-form", class: "schema-form", novalidate: false },
    h("div", { class: "fields" }, columns.map(control)),
    controlsLine(controls),
    h(
      "p",
      { class: "actions" },
      submit,
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onclick: () => {
            for (const input of form.querySelectorAll('input[data-type="continuous"]'))
              if (input.value === "" && input.dataset.mean !== "") input.value = num(Number(input.dataset.mean), 6);
          },
        },
        "Fill empty numbers with training means",
      ),
      h("button", { type: "reset", class: "secondary", onclick: () => clear(result) }, "Reset"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(result, h("p", { class: "loading", role: "status" }, h("span", { class: "spinner" }), "Predicting…"));
    try {
      const rows = [rowFrom(form, columns)];
      const response = await busy(result, submit, api.predictRows(detail.name, rows, { query: queryOf(controls), signal }));
      markInvalid(form, null);
      // The row as it was sent: the explanation is of this prediction, whatever the form holds later.
      clear(result, predictionView(view, response.predictions[0], rowExplainer(detail, rows[0], { signal })));
    } catch (err) {
      if (err.name === "AbortError") return;
      markInvalid(form, err);
      clear(result, errorBox(err));
    }
  });
  // A changed control (a threshold) answers again for the row already shown.
  for (const c of controls)
    c.input.addEventListener("change", () => {
      if (!result.querySelector("#tabular-prediction") || submit.disabled || !c.input.reportValidity()) return;
      if (form.checkValidity()) form.requestSubmit();
    });
  return h(
    "section",
    { id: "mode-row", "aria-labelledby": "mode-row-title" },
    h("h2", { id: "mode-row-title" }, "One row"),
    h(
      "p",
      { class: "hint" },
      `${columns.length} inputs, built from the model's schema. Placeholders are training means; `,
      "a categorical value may be \"(missing)\".",
    ),
    form,
    result,
  );
}

/** The CSV mode: a file scored by the model's kind's predict/csv (`kind`), shown as a table with the task's
 * columns first, and the scored CSV to download. `controls` are the kind's own (text: its column). */
export function csvForm(view, detail, signal, { kind = "tabular", intro = "Each row is scored", controls: own = [] } = {}) {
  const result = h("div", { class: "result", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Score CSV");
  const controls = [...own, ...view.controls(detail, { place: "csv", id: "csv-" })];
  const file = h("input", { id: "csv-file", name: "file", type: "file", accept: ".csv,text/csv", required: true });
  let downloadUrl = null;
  const revoke = () => {
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = null;
  };
  const form = h(
    "form",
    { id: "csv-form" },
    h("div", { class: "field" }, h("label", { for: "csv-file" }, "CSV file with a header row"), file),
    controlsLine(controls),
    h("p", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    const chosen = file.files[0];
    const body = new FormData();
    body.append("file", chosen, chosen.name);
    revoke();
    clear(result, h("p", { class: "loading", role: "status" }, h("span", { class: "spinner" }), `Scoring ${chosen.name}…`));
    try {
      const query = queryOf(controls);
      const text = await busy(result, submit, api.predictCsv(detail.name, body, { accept: "text/csv", query, kind, signal }));
      const [fileHeader, ...fileRows] = parseCsv(text).filter((r) => r.length > 1 || r[0] !== "");
      downloadUrl = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      const scoredName = chosen.name.replace(/\.csv$/i, "") + "-scored.csv";
      // On screen the answer comes first: the API appends its task's columns (and each row's
      // `prediction_id`, what feedback names it by) after the input columns.
      const { answers, scores } = view.csvColumns(detail);
      const added = [...answers, ...scores, "prediction_id"].map((c) => fileHeader.lastIndexOf(c)).filter((i) => i >= 0);
      const order = [...added, ...fileHeader.map((c, i) => i).filter((i) => !added.includes(i))];
      const header = order.map((i) => fileHeader[i]);
      const rows = fileRows.map((r) => order.map((i) => r[i] ?? ""));
      clear(
        result,
        h(
          "p",
          { class: "csv-summary" },
          `${rows.length} row(s) scored. `,
          h("a", { class: "button", id: "csv-download", href: downloadUrl, download: scoredName }, `Download ${scoredName}`),
        ),
        rows.length > SHOWN_ROWS ? h("p", { class: "hint" }, `Showing the first ${SHOWN_ROWS} rows; the download has all.`) : null,
        table(
          header.map((c, i) => (i < added.length && answers.includes(c) ? h("strong", {}, c) : c)),
          rows.slice(0, SHOWN_ROWS),
          { caption: "Scored rows", className: "results-table" },
        ),
      );
    } catch (err) {
      if (err.name !== "AbortError") clear(result, errorBox(err));
    }
  });
  const section = h(
    "section",
    { id: "mode-csv", "aria-labelledby": "mode-csv-title" },
    h("h2", { id: "mode-csv-title" }, "CSV file"),
    h("p", { class: "hint" }, `${intro}; the table and the download add `, view.csvHint(detail), "."),
    form,
    result,
  );
  return { section, revoke };
}

/** Two modes as tabs: one row (the generated form) and a CSV upload. */
export function renderTabular(root, detail, { signal }) {
  const view = taskView(detail);
  if (!view || !view.row) {
    root.append(errorBox(`this page cannot show a tabular model whose task is ${detail.task}; the API serves it (see API docs)`));
    return null;
  }
  const row = rowForm(view, detail, signal);
  const csv = csvForm(view, detail, signal);
  const tablist = modeTabs([
    { key: "row", text: "One row", panel: row },
    { key: "csv", text: "CSV file", panel: csv.section },
  ]);
  root.append(tablist, row, csv.section);
  return csv.revoke;
}
