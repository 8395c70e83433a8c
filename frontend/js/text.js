// Text page: a box of texts (one per line) predicted in one request, each shown by the view of the model's
// task (tasks.js: the label and a bar per class, or labels over a threshold) with its warnings (the share of
// tokens the model does not know); and a CSV mode (a `text` column, or another named) as the tabular page's.
import { api } from "./api.js";
import { busy, clear, errorBox, h, loading, modeTabs, num } from "./dom.js";
import { textExplainer } from "./explain.js";
import { controlsLine, csvForm, queryOf } from "./tabular.js";
import { taskView } from "./tasks.js";

const QUOTE_CHARS = 400;

/** The texts of the box: one per line, blank lines skipped (they separate texts, they are not texts). */
const textsOf = (value) => value.split(/\r?\n/).filter((line) => line.trim() !== "");

function warningsOf(item) {
  return item.warnings?.length
    ? h(
        "div",
        { class: "warnings" },
        h("h3", {}, "Warnings"),
        h("ul", {}, item.warnings.map((w) => h("li", { class: "warning" }, w))),
      )
    : h("p", { class: "hint" }, "No warnings for this text.");
}

function textCard(view, text, item, index, explainer) {
  const quote = text.length > QUOTE_CHARS ? `${text.slice(0, QUOTE_CHARS)}…` : text;
  return h(
    "li",
    { class: "text-prediction", dataset: { index: String(index) } },
    h("blockquote", { class: "text-quote", title: text }, quote),
    view.row(item),
    warningsOf(item),
    explainer,
  );
}

function schemaHint(schema) {
  const facts = [
    schema.tokenizer && `tokenised by ${schema.tokenizer}`,
    typeof schema.vocab_size === "number" && `${num(schema.vocab_size)} tokens in its vocabulary`,
    typeof schema.max_len === "number" && `texts cut at ${num(schema.max_len)} tokens`,
  ].filter(Boolean);
  return facts.length ? ` The model: ${facts.join(", ")}.` : "";
}

function textsForm(view, detail, signal) {
  const result = h("div", { class: "result", id: "text-result", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, "Predict");
  const controls = view.controls(detail, { place: "texts", id: "texts-" });
  const box = h("textarea", {
    id: "texts",
    name: "texts",
    class: "texts-input",
    rows: "6",
    required: true,
    "aria-describedby": "texts-hint",
    placeholder: "One text per line",
  });
  const form = h(
    "form",
    { id: "text-form" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "texts" }, "Texts, one per line"),
      box,
      h(
        "span",
        { class: "hint", id: "texts-hint" },
        "Each line is one text; blank lines are skipped. All of them go in one request.",
        schemaHint(detail.input_schema || {}),
      ),
    ),
    controlsLine(controls),
    h(
      "p",
      { class: "actions" },
      submit,
      h("button", { type: "reset", class: "secondary", onclick: () => clear(result) }, "Clear"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const texts = textsOf(box.value);
    if (!texts.length) {
      clear(result, errorBox("write at least one text (one per line)"));
      return;
    }
    clear(result, loading(`Predicting ${texts.length} text(s)…`));
    try {
      const query = queryOf(controls);
      const response = await busy(result, submit, api.predictTexts(detail.name, texts, { query, signal }));
      clear(
        result,
        h("p", { class: "hint", id: "text-summary" }, `${texts.length} text(s) predicted in one request.`),
        h(
          "ol",
          { class: "text-predictions", id: "text-predictions", "aria-label": "Predictions, one per text" },
          response.predictions.map((item, i) =>
            textCard(view, texts[i], item, i, textExplainer(detail, texts[i], { signal })),
          ),
        ),
      );
    } catch (err) {
      if (err.name !== "AbortError") clear(result, errorBox(err));
    }
  });
  // A changed control (a threshold) answers again for the texts already shown.
  for (const c of controls)
    c.input.addEventListener("change", () => {
      if (!result.querySelector("#text-predictions") || submit.disabled || !c.input.reportValidity()) return;
      form.requestSubmit();
    });
  return h(
    "section",
    { id: "mode-texts", "aria-labelledby": "mode-texts-title" },
    h("h2", { id: "mode-texts-title" }, "Texts"),
    form,
    result,
  );
}

/** The CSV's text column (`?column=`); empty = the API's default, `text`. */
function columnControl() {
  const input = h("input", {
    id: "csv-column",
    name: "column",
    type: "text",
    placeholder: "text",
    autocomplete: "off",
    spellcheck: "false",
  });
  const el = h("span", { class: "control" }, h("label", { for: "csv-column" }, "Text column"), input);
  const query = () => (input.value.trim() === "" ? {} : { column: input.value.trim() });
  return { el, input, query };
}

/** Two modes as tabs: texts typed in a box, and a CSV upload. */
export function renderText(root, detail, { signal }) {
  const view = taskView(detail);
  if (!view || !view.row) {
    root.append(errorBox(`this page cannot show a text model whose task is ${detail.task}; the API serves it (see API docs)`));
    return null;
  }
  const texts = textsForm(view, detail, signal);
  const csv = csvForm(view, detail, signal, {
    kind: "text",
    intro: "A CSV with a text column (named text, or the one you name); each row's text is predicted",
    controls: [columnControl()],
  });
  const tablist = modeTabs([
    { key: "texts", text: "Texts", panel: texts },
    { key: "csv", text: "CSV file", panel: csv.section },
  ]);
  root.append(tablist, texts, csv.section);
  return csv.revoke;
}
