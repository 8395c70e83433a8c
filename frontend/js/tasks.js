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

// -- segmentation: the mask coloured over the thumbnail, a legend (class, colour, fraction), an opacity slider
/** A colour per class index: distinct for the first ten (Okabe–Ito and Tableau), then spread on the hue wheel. */
const CLASS_COLOURS = [
  [230, 159, 0],
  [86, 180, 233],
  [0, 158, 115],
  [240, 228, 66],
  [0, 114, 178],
  [213, 94, 0],
  [204, 121, 167],
  [148, 103, 189],
  [140, 86, 75],
  [127, 127, 127],
];

export function classColour(index) {
  if (index < CLASS_COLOURS.length) return CLASS_COLOURS[index];
  // Golden-angle hues: neighbouring indices never get close colours (HSL with s = 0.7, l = 0.5, to RGB).
  const hue = (index * 137.508) % 360;
  const f = (n) => {
    const k = (n + hue / 30) % 12;
    return Math.round(255 * (0.5 - 0.35 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

const rgb = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * The class index of every pixel of the API's mask PNG (8-bit or fewer bits per pixel, palette or grey, not
 * interlaced: what an 8-bit mask is written as). Read from the file's own samples, never from the colours a
 * browser draws, so a palette's colours (or colour management) cannot change which class a pixel is.
 */
export async function maskIndices(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const data = new DataView(bytes.buffer);
  const PNG = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 33 || PNG.some((b, i) => bytes[i] !== b)) throw new Error("the mask is not a PNG");
  let header = null;
  const idat = [];
  for (let at = 8; at + 8 <= bytes.length; ) {
    const length = data.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (type === "IHDR")
      header = {
        width: data.getUint32(at + 8),
        height: data.getUint32(at + 12),
        depth: bytes[at + 16],
        colour: bytes[at + 17],
        interlace: bytes[at + 20],
      };
    else if (type === "IDAT") idat.push(bytes.subarray(at + 8, at + 8 + length));
    else if (type === "IEND") break;
    at += 12 + length;
  }
  if (!header || ![0, 3].includes(header.colour) || ![1, 2, 4, 8].includes(header.depth) || header.interlace)
    throw new Error("the mask PNG is not one 8-bit (or fewer) channel of class indices");
  const { width, height, depth } = header;
  const joined = new Uint8Array(idat.reduce((n, part) => n + part.length, 0));
  idat.reduce((at, part) => (joined.set(part, at), at + part.length), 0);
  const raw = await inflate(joined);
  const stride = Math.ceil((width * depth) / 8);
  let previous = new Uint8Array(stride);
  const indices = new Uint8Array(width * height);
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    const start = y * (stride + 1);
    const filter = raw[start];
    const line = raw.subarray(start + 1, start + 1 + stride);
    const row = new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x > 0 ? row[x - 1] : 0; // one byte per pixel at most: the left neighbour is one byte back
      const b = previous[x];
      const c = x > 0 ? previous[x - 1] : 0;
      let predictor = 0;
      if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[x] = (line[x] + predictor) & 255;
    }
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      indices[y * width + x] = depth === 8 ? row[x] : (row[bit >> 3] >> (8 - depth - (bit & 7))) & mask;
    }
    previous = row;
  }
  return { width, height, indices };
}

/** A canvas of the mask's own size, each pixel its class's legend colour (drawn over the thumbnail and
 * fitted as it is: object-fit: contain on both, and the mask has the uploaded image's size). */
function maskCanvas({ width, height, indices }, { name }) {
  const canvas = h("canvas", { class: "mask-overlay", width, height, role: "img", "aria-label": `class mask of ${name}` });
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const table = new Uint8ClampedArray(256 * 4);
  for (let index = 0; index < 256; index++) table.set([...classColour(index), 255], index * 4);
  const pixels = image.data;
  for (let i = 0; i < indices.length; i++) {
    const from = indices[i] * 4;
    pixels[i * 4] = table[from];
    pixels[i * 4 + 1] = table[from + 1];
    pixels[i * 4 + 2] = table[from + 2];
    pixels[i * 4 + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

function legend(item, { name }) {
  return h(
    "ul",
    { class: "legend", "aria-label": `classes of ${name}` },
    item.classes.map((code, index) => {
      const colour = rgb(classColour(index));
      const fraction = item.class_fractions?.[code] ?? 0;
      return h(
        "li",
        { class: "legend-entry", dataset: { class: code, index: String(index), colour, fraction: String(fraction) } },
        h("span", { class: "swatch", style: { background: colour }, "aria-hidden": "true" }),
        h("span", { class: "legend-class" }, code),
        h("span", { class: "legend-fraction" }, pct(fraction)),
      );
    }),
  );
}

const segmentation = {
  title: "Segment images",
  facts: classFacts,
  controls: () => [],
  tile(item, { file, frame }) {
    const opacity = h("input", { class: "mask-opacity", type: "range", min: "0", max: "100", step: "1", value: "50" });
    const note = h("p", { class: "hint mask-note", "aria-live": "polite" });
    let overlay = null;
    const apply = () => {
      if (overlay) overlay.style.opacity = String(Number(opacity.value) / 100);
    };
    opacity.addEventListener("input", apply);
    maskIndices(item.mask_png)
      .then((mask) => {
        overlay = maskCanvas(mask, { name: file.name });
        frame.append(overlay);
        apply();
      })
      .catch((err) => {
        note.textContent = `The mask cannot be drawn here (${err.message}); its PNG is below.`;
      });
    const [height, width] = item.size;
    return [
      h("p", { class: "tile-label" }, `mask ${width}×${height}`),
      legend(item, { name: file.name }),
      h("label", { class: "opacity-control" }, "Mask opacity ", opacity),
      note,
      h(
        "a",
        {
          class: "mask-download",
          href: `data:image/png;base64,${item.mask_png}`,
          download: `${file.name.replace(/\.[^.]*$/, "")}-mask.png`,
        },
        "mask PNG",
      ),
    ];
  },
};

// -- rating: a user–item pair's predicted rating; null = an unknown user or item (the warning says which) --
const rating = {
  title: "Predict a rating",
  facts: () => [["predicts", "a rating per user–item pair"]],
  controls: () => [],
  row(item) {
    if (item.rating === null || item.rating === undefined)
      return [h("p", { class: "label-line rating-unknown" }, "No rating: unknown user/item")];
    return [
      h(
        "p",
        { class: "label-line" },
        "Predicted rating ",
        h("strong", { class: "rating", dataset: { rating: String(item.rating) } }, num(item.rating, 3)),
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
  segmentation: segmentation,
  rating: rating,
};

/** The view of a model's task, or null when this page has none (e.g. a newer server's task). */
export const taskView = (model) => (Object.hasOwn(TASK_VIEWS, model.task) ? TASK_VIEWS[model.task] : null);
