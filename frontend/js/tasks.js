// One view per task (API.md, "Learner kinds and tasks"): what a model card says about its outputs, the
// controls a request of that task takes, how one prediction item is shown (a tabular row, an image tile)
// and which columns predict/csv adds. The tabular and vision pages look the model's task up here and
// never ask which task it is: a new task is one new entry in TASK_VIEWS.
import { h, num, pct, probabilityBars } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

/** `svg("circle", {cx: 1})`: an SVG element (h() builds HTML elements only). */
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  el.append(...children);
  return el;
}

const count = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** A labelled number input for a request's query; `query()` is {} while it is empty. */
function numberControl({ id, label, hint, name, min, max, step, value = "", placeholder = "" }) {
  const input = h("input", {
    id,
    name,
    type: "number",
    min,
    max,
    step,
    value,
    placeholder,
    inputmode: "decimal",
    "aria-describedby": hint ? `${id}-hint` : null,
  });
  const el = h(
    "span",
    { class: "control" },
    h("label", { for: id }, label),
    input,
    hint ? h("span", { class: "hint", id: `${id}-hint` }, hint) : null,
  );
  const query = () => (input.value.trim() === "" ? {} : { [name]: input.value.trim() });
  return { el, input, query };
}

function thresholdControl(id, detail) {
  return numberControl({
    id,
    name: "threshold",
    label: "Threshold",
    hint: "between 0 and 1; empty = the learner's own",
    min: "0.01",
    max: "0.99",
    step: "0.01",
    placeholder: detail && typeof detail.threshold === "number" ? String(detail.threshold) : "default",
  });
}

function classFacts(model) {
  return [["classes", model.classes?.length ? String(model.classes.length) : "—"]];
}

// -- classification: the label and a probability per class (unchanged from the first pages) ------------
const classification = {
  title: "Classify images",
  facts: classFacts,
  controls(detail, { place, id }) {
    if (place !== "images") return [];
    const n = Math.max(1, detail.classes.length);
    const topK = numberControl({
      id: `${id}top-k`,
      name: "top_k",
      label: "Top classes per image",
      min: "1",
      max: String(n),
      step: "1",
      value: String(Math.min(3, n)),
    });
    topK.input.setAttribute("inputmode", "numeric");
    const query = () => ({ top_k: Math.min(Math.max(1, Math.round(Number(topK.input.value) || 3)), n) });
    return [{ ...topK, query }];
  },
  row(item) {
    return [
      h("p", { class: "label-line" }, "Predicted ", h("strong", { class: "predicted-label" }, item.label)),
      probabilityBars(item.probabilities, { caption: "probability per class" }),
    ];
  },
  tile(item, { file }) {
    return [
      h(
        "p",
        { class: "tile-label" },
        h("strong", { class: "predicted-label" }, item.label),
        ` ${pct(item.top_k[0]?.probability ?? 0)}`,
      ),
      h(
        "ol",
        { class: "topk", "aria-label": `top ${item.top_k.length} for ${file.name}` },
        item.top_k.map((k) =>
          h(
            "li",
            { class: "prob" },
            h("span", { class: "prob-label" }, k.label),
            h("span", { class: "prob-bar" }, h("span", { class: "prob-fill", style: { width: `${k.probability * 100}%` } })),
            h("span", { class: "prob-value" }, pct(k.probability)),
          ),
        ),
      ),
    ];
  },
  csvColumns: (detail) => ({ answers: ["prediction"], scores: detail.classes.map((c) => `p_${c}`) }),
  csvHint: () => [h("code", {}, "prediction"), " and ", h("code", {}, "p_<class>"), " columns"],
};

// -- multi_label: chips for the labels over the threshold, a bar per class with the threshold marked ----
function chips(item, { name }) {
  return h(
    "div",
    { class: "chips-line" },
    item.labels.length
      ? h(
          "ul",
          { class: "chips", "aria-label": `predicted labels${name ? ` for ${name}` : ""}` },
          item.labels.map((label) => h("li", { class: "chip", dataset: { label } }, label)),
        )
      : h("p", { class: "no-labels" }, "No class reaches the threshold."),
  );
}

function thresholdBars(item, { caption }) {
  const items = Object.entries(item.probabilities).sort((a, b) => b[1] - a[1]);
  const at = `${Math.max(0, Math.min(1, item.threshold)) * 100}%`;
  return h(
    "ul",
    { class: "probs multi", "aria-label": caption },
    items.map(([label, p]) =>
      h(
        "li",
        { class: `prob${p >= item.threshold ? " over" : ""}`, dataset: { label } },
        h("span", { class: "prob-label" }, label),
        h(
          "span",
          { class: "prob-bar", role: "presentation" },
          h("span", { class: "prob-fill", style: { width: `${Math.max(0, Math.min(1, p)) * 100}%` } }),
          h("span", { class: "prob-threshold", style: { left: at } }),
        ),
        h("span", { class: "prob-value" }, pct(p)),
      ),
    ),
  );
}

const thresholdLine = (item, { short = false } = {}) =>
  h(
    "p",
    { class: "hint threshold-line" },
    "Threshold ",
    h("strong", { class: "threshold" }, num(item.threshold)),
    short ? " (the lines)" : " (the line on each bar); each class is scored on its own.",
  );

const multiLabel = {
  title: "Tag images",
  facts: classFacts,
  controls: (detail, { id }) => [thresholdControl(`${id}threshold`, detail)],
  row(item) {
    return [
      h("p", { class: "label-line" }, "Predicted labels"),
      chips(item, {}),
      thresholdLine(item),
      thresholdBars(item, { caption: "probability per class" }),
    ];
  },
  tile(item, { file }) {
    return [
      chips(item, { name: file.name }),
      thresholdLine(item, { short: true }),
      thresholdBars(item, { caption: `probability per class for ${file.name}` }),
    ];
  },
  csvColumns: (detail) => ({ answers: ["prediction"], scores: detail.classes.map((c) => `p_${c}`) }),
  csvHint: () => [
    h("code", {}, "prediction"),
    " (the labels joined by ",
    h("code", {}, ";"),
    ") and ",
    h("code", {}, "p_<class>"),
    " columns",
  ],
};

// -- regression: a value per target, named -----------------------------------------------------------
function valueList(item, { name }) {
  return h(
    "dl",
    { class: "values", "aria-label": `predicted values${name ? ` for ${name}` : ""}` },
    Object.entries(item.values).map(([target, value]) => [
      h("dt", { class: "target" }, target),
      h("dd", { class: "value", dataset: { target, value: String(value) } }, num(value, 5)),
    ]),
  );
}

const regression = {
  title: "Predict values of images",
  facts: (model) => [["targets", model.targets?.length ? model.targets.join(", ") : "—"]],
  controls: () => [],
  row: (item) => [h("p", { class: "label-line" }, "Predicted"), valueList(item, {})],
  tile: (item, { file }) => [valueList(item, { name: file.name })],
  csvColumns: (detail) => ({
    answers: detail.targets.length === 1 ? ["prediction"] : detail.targets.map((t) => `prediction_${t}`),
    scores: [],
  }),
  csvHint: (detail) =>
    detail.targets.length === 1
      ? [h("code", {}, "prediction"), " column"]
      : [h("code", {}, "prediction_<target>"), ` columns (${detail.targets.join(", ")})`],
};

// -- points: drawn on the thumbnail (SVG in the image's own pixels, scaled as the thumbnail is) and listed
/** An SVG over the thumbnail: its viewBox is the image's pixels and it fits the frame as the <img> does
 * (object-fit: contain ≡ preserveAspectRatio meet), so a point is drawn at the API's coordinates. */
function pointsOverlay(points, { width, height, name }) {
  const r = Math.max(width, height) * 0.035;
  return svg(
    "svg",
    {
      class: "points-overlay",
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: "xMidYMid meet",
      role: "img",
      "aria-label": `${count(points.length, "point")} on ${name}`,
    },
    ...points.map(([x, y], i) =>
      svg(
        "g",
        { class: "point", "data-index": i },
        svg("circle", { cx: x, cy: y, r, class: "point-mark" }),
        svg("text", { x: x + r * 1.3, y: y - r * 1.3, "font-size": r * 2.6, class: "point-number" }, String(i + 1)),
      ),
    ),
  );
}

const points = {
  title: "Locate points in images",
  facts: (model) => [["points", model.targets?.length ? String(model.targets.length) : "—"]],
  controls: () => [],
  tile(item, { file, frame, img }) {
    const draw = () => {
      const size = { width: img.naturalWidth, height: img.naturalHeight };
      if (size.width) frame.append(pointsOverlay(item.points, { ...size, name: file.name }));
    };
    if (img && img.complete) draw();
    else if (img) img.addEventListener("load", draw, { once: true });
    return [
      h(
        "ol",
        { class: "point-list", "aria-label": `points of ${file.name}, in its pixels` },
        item.points.map(([x, y]) =>
          h("li", { class: "point-xy", dataset: { x: String(x), y: String(y) } }, `x ${num(x, 4)}, y ${num(y, 4)}`),
        ),
      ),
    ];
  },
};

/** The view of every task the pages show, keyed by the API's `task` (tests read the keys of this table). */
export const TASK_VIEWS = {
  classification: classification,
  multi_label: multiLabel,
  regression: regression,
  points: points,
};

/** The view of a model's task, or null when this page has none (e.g. a newer server's task). */
export const taskView = (model) => (Object.hasOwn(TASK_VIEWS, model.task) ? TASK_VIEWS[model.task] : null);
