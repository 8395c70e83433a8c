// Explanations beside predictions (API.md, "Explanations"): an "Explain" action on an image tile (the
// heatmap's colour overlay on the thumbnail), on a predicted row (a signed bar per input column) and on a
// text (its tokens coloured by attribution). Each asks its kind's /explain for that one item, with a target
// chosen among the model's own (EXPLAIN_TARGETS, by task) and, for images, a method.
import { api } from "./api.js";
import { clear, errorBox, h, loading, num, table } from "./dom.js";

const classes = { what: "class", output: "probability", names: (detail) => detail.classes || [] };
const targets = { what: "target", output: "value", names: (detail) => detail.targets || [] };
const points = { what: "point", output: "projection", names: (detail) => detail.targets || [] };

/** What each task explains (the API's targets, service/explain/core.py TARGETS): what one is called, what
 * the explained number is, and the names to choose from. A task without an entry has no Explain action. */
export const EXPLAIN_TARGETS = {
  classification: classes,
  multi_label: classes,
  regression: targets,
  points: points,
  segmentation: classes,
};

/** The methods the API offers for images (rows and texts: integrated gradients only). */
export const METHODS = { gradcam: "Grad-CAM", integrated_gradients: "integrated gradients" };

const methodName = (method) => (Object.hasOwn(METHODS, method) ? METHODS[method] : method);

/** The explain rule of a model's task, or null when its answers cannot be explained (e.g. a rating). */
export const explainRule = (detail) => (Object.hasOwn(EXPLAIN_TARGETS, detail.task) ? EXPLAIN_TARGETS[detail.task] : null);

/** An AbortController that also aborts when `parent` does (the page's own signal: leaving it stops the call). */
function linked(parent) {
  const controller = new AbortController();
  if (parent?.aborted) controller.abort();
  else if (parent) parent.addEventListener("abort", () => controller.abort(), { once: true });
  return controller;
}

/** Runs calls so that only the latest one answers: a newer choice aborts the call still on its way, and
 * an aborted or overtaken call resolves to null instead of its value. */
function latestOnly(parent) {
  let current = null;
  return async (call) => {
    if (current) current.abort();
    const mine = linked(parent);
    current = mine;
    try {
      const value = await call(mine.signal);
      return current === mine && !mine.signal.aborted ? { value } : null;
    } catch (err) {
      if (err.name === "AbortError" || current !== mine) return null;
      throw err;
    }
  };
}

/** A select of the names the model explains, labelled with what they are (class, target, point). */
function targetControl(rule, detail) {
  const select = h(
    "select",
    { class: "explain-target-select", name: "target" },
    rule.names(detail).map((name) => h("option", { value: name }, name)),
  );
  return { el: h("label", { class: "explain-control" }, `Explain ${rule.what} `, select), select };
}

function warningList(item) {
  return item.warnings?.length ? h("ul", { class: "explain-warnings" }, item.warnings.map((w) => h("li", { class: "warning" }, w))) : null;
}

/** The toggle button of an explain panel: pressed = the explanation is shown. */
function toggleButton(text) {
  return h("button", { type: "button", class: "secondary explain-toggle", "aria-pressed": "false" }, text);
}

/** A signed colour for an attribution: blue for positive, orange for negative, as strong as |value| is
 * against the largest |value| shown beside it (colour-blind safe pair). */
export function signedColour(value, largest) {
  const strength = largest > 0 ? Math.min(1, Math.abs(value) / largest) : 0;
  const [r, g, b] = value >= 0 ? [31, 95, 168] : [213, 94, 0];
  return `rgb(${r} ${g} ${b} / ${(0.08 + 0.62 * strength).toFixed(3)})`;
}

const signed = (value) => `${value > 0 ? "+" : value < 0 ? "−" : ""}${num(Math.abs(value), 3)}`;

/** "Explains X (class): its probability 0.79; 0.41 at the reference; the sum … within …". */
function outputLine(rule, item, { reference }) {
  return h(
    "p",
    { class: "explain-line" },
    "Explains ",
    h("strong", { class: "explain-target" }, item.target),
    ` (${rule.what}) by ${methodName(item.method)}: its ${rule.output} `,
    h("strong", { class: "explain-output" }, num(item.output, 4)),
    ", ",
    h("span", { class: "explain-base" }, num(item.base_value, 4)),
    ` at ${reference}; each attribution is what its part adds to that base value (base value + their sum = `,
    `the output, within ${num(item.completeness_error, 2)}).`,
  );
}

// -- images -------------------------------------------------------------------------------------------
/**
 * The Explain action of one image tile: the first press asks for the default explanation (the predicted
 * class, the first target or point) and lays its colour overlay on the thumbnail; pressing again hides it
 * and shows the image. Another target or method asks again for this image only. Null when the task has no
 * targets to explain.
 */
export function imageExplainer(detail, { file, frame, signal }) {
  const rule = explainRule(detail);
  if (!rule) return null;
  const button = toggleButton("Explain");
  const target = targetControl(rule, detail);
  const method = h(
    "select",
    { class: "explain-method", name: "method" },
    Object.entries(METHODS).map(([value, text]) => h("option", { value }, text)),
  );
  const controls = h("div", { class: "explain-controls", hidden: true }, target.el, h("label", { class: "explain-control" }, "Method ", method));
  const status = h("div", { class: "explain-status", "aria-live": "polite", hidden: true });
  const ask = latestOnly(signal);
  let overlay = null;
  let line = null; // what the overlay shown explains
  let shown = false;

  function show(item) {
    if (overlay) overlay.remove();
    overlay = h("img", {
      class: "explain-overlay",
      src: `data:image/png;base64,${item.overlay_png}`,
      alt: `${methodName(item.method)} of ${rule.what} ${item.target} over ${file.name}`,
      dataset: { target: item.target, method: item.method },
      hidden: !shown,
    });
    frame.append(overlay);
    target.select.value = item.target;
    method.value = item.method;
    line = h(
      "p",
      { class: "explain-line" },
      "Explains ",
      h("strong", { class: "explain-target" }, item.target),
      ` (${rule.what}) by ${methodName(item.method)}`,
      item.layer ? ` at layer ${item.layer}` : "",
    );
    clear(status, line, warningList(item));
  }

  /** A refused call leaves the overlay shown before it: the selects say again what that one explains. */
  function refused(err) {
    if (overlay) {
      target.select.value = overlay.dataset.target;
      method.value = overlay.dataset.method;
    }
    clear(status, line, errorBox(err));
  }

  async function explain(query) {
    const form = new FormData();
    form.append("files", file, file.name);
    clear(status, loading("Explaining…"));
    try {
      const got = await ask((s) => api.explainImages(detail.name, form, { query, signal: s }));
      if (got) show(got.value.explanations[0]);
    } catch (err) {
      refused(err);
    }
  }

  button.addEventListener("click", () => {
    shown = !shown;
    button.setAttribute("aria-pressed", String(shown));
    button.textContent = shown ? "Hide explanation" : "Explain";
    controls.hidden = status.hidden = !shown;
    if (overlay) overlay.hidden = !shown;
    else if (shown && !status.querySelector(".loading")) explain({ method: method.value });
  });
  target.select.addEventListener("change", () => explain({ target: target.select.value, method: method.value }));
  method.addEventListener("change", () => {
    // Before any answer the select shows its first name, not the model's default: keep the default then.
    const chosen = overlay ? target.select.value : undefined;
    explain({ target: chosen, method: method.value });
  });
  return h("div", { class: "explain explain-image" }, button, controls, status);
}

// -- rows ---------------------------------------------------------------------------------------------
/** A diverging bar per column, largest |attribution| first: positive to the right in blue, negative to the
 * left in orange, each as long as its share of the largest. */
export function attributionBars(attributions, { caption }) {
  const entries = Object.entries(attributions).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
  const largest = Math.max(0, ...entries.map(([, value]) => Math.abs(value)));
  return h(
    "ol",
    { class: "attributions", "aria-label": caption },
    entries.map(([column, value]) => {
      const side = value >= 0 ? "positive" : "negative";
      const half = largest > 0 ? (50 * Math.abs(value)) / largest : 0;
      return h(
        "li",
        { class: `attribution ${side}`, dataset: { column, value: String(value) } },
        h("span", { class: "attr-label", title: column }, column),
        h(
          "span",
          { class: "attr-track", role: "presentation" },
          h("span", { class: "attr-fill", style: { width: `${half}%`, [value >= 0 ? "left" : "right"]: "50%" } }),
        ),
        h("span", { class: "attr-value" }, signed(value)),
      );
    }),
  );
}

/** An Explain action over one item (a row, a text): a toggle, a panel with a target to choose, and the
 * latest answer of `call(query, signal)` drawn by `render(item, answer)` (`what` names the item). */
function attributionExplainer(detail, { label, what, className, call, render, signal }) {
  const rule = explainRule(detail);
  if (!rule) return null;
  const button = toggleButton(label);
  const target = targetControl(rule, detail);
  const body = h("div", { class: "explain-body", "aria-live": "polite" });
  const panel = h("div", { class: "explain-panel", hidden: true }, h("p", { class: "explain-controls" }, target.el), body);
  const ask = latestOnly(signal);
  let asked = false;

  async function explain(query) {
    asked = true;
    clear(body, loading(`Explaining the ${what}…`));
    try {
      const got = await ask((s) => call(query, s));
      if (!got) return;
      const item = got.value.explanations[0];
      target.select.value = item.target;
      clear(body, ...render(rule, item, got.value));
    } catch (err) {
      clear(body, errorBox(err));
    }
  }

  button.addEventListener("click", () => {
    const open = panel.hidden;
    panel.hidden = !open;
    button.setAttribute("aria-pressed", String(open));
    if (open && !asked) explain({});
  });
  target.select.addEventListener("change", () => explain({ target: target.select.value }));
  return h("div", { class: `explain ${className}` }, button, panel);
}

/** The Explain action of a predicted row: the row's attributions as a bar chart, with the explained output,
 * its base value at the reference row (shown on request) and a target to choose. */
export function rowExplainer(detail, row, { signal }) {
  return attributionExplainer(detail, {
    label: "Explain this row",
    what: "row",
    className: "explain-row",
    signal,
    call: (query, s) => api.explainRows(detail.name, [row], { query, signal: s }),
    render: (rule, item, answer) => [
      outputLine(rule, item, { reference: "the reference row" }),
      attributionBars(item.attributions, { caption: `attribution per column to ${item.target}, largest first` }),
      h(
        "details",
        { class: "explain-reference" },
        h("summary", {}, "The reference row (training means, #na# categories)"),
        table(
          ["column", "value"],
          Object.entries(answer.reference || {}).map(([column, value]) => [column, num(value)]),
          { caption: "reference row" },
        ),
      ),
      warningList(item),
    ],
  });
}

// -- texts --------------------------------------------------------------------------------------------
/** The text's tokens in order, each coloured by its signed attribution; fastai's special tokens (xxbos,
 * xxmaj, …) muted, since they mark the text's form rather than carry its words. */
export function tokenHighlights(item, { caption }) {
  const largest = Math.max(0, ...item.attributions.map((value) => Math.abs(value)));
  return h(
    "p",
    { class: "tokens", "aria-label": caption },
    item.tokens.map((token, i) => {
      const value = item.attributions[i] ?? 0;
      const special = Boolean(item.special?.[i]);
      return [
        h(
          "span",
          {
            class: `token ${value >= 0 ? "positive" : "negative"}${special ? " special" : ""}`,
            title: `${token}: ${signed(value)}`,
            dataset: { index: String(i), attribution: String(value), special: String(special) },
            style: { backgroundColor: signedColour(value, largest) },
          },
          token,
        ),
        " ",
      ];
    }),
  );
}

function tokenLegend() {
  return h(
    "p",
    { class: "hint token-legend" },
    h("span", { class: "token negative", style: { backgroundColor: signedColour(-1, 1) } }, "against"),
    " ",
    h("span", { class: "token positive", style: { backgroundColor: signedColour(1, 1) } }, "for"),
    " the explained class; stronger colour, larger share. ",
    h("span", { class: "token special" }, "xxbos"),
    " fastai's own tokens, muted.",
  );
}

/** The Explain action of a predicted text: its tokens highlighted by attribution, a target to choose. */
export function textExplainer(detail, text, { signal }) {
  return attributionExplainer(detail, {
    label: "Explain",
    what: "text",
    className: "explain-text",
    signal,
    call: (query, s) => api.explainTexts(detail.name, [text], { query, signal: s }),
    render: (rule, item) => [
      outputLine(rule, item, { reference: "the reference text (all padding, whose embedding is zero)" }),
      tokenHighlights(item, { caption: `tokens coloured by their attribution to ${item.target}` }),
      tokenLegend(),
      warningList(item),
    ],
  });
}
