// Image page: pick or drop several images; a thumbnail for each appears at once, then each gets its
// prediction from one batched request, shown by the view of the model's task (tasks.js): a label and
// top-k, labels and a bar per class, values, or points drawn on the thumbnail. Each answered image has an
// Explain action (explain.js): the explanation's overlay on its thumbnail, a target and a method to choose.
import { api } from "./api.js";
import { busy, clear, errorBox, h } from "./dom.js";
import { imageExplainer } from "./explain.js";
import { NOT_AN_IMAGE, compileSignatures, sniffImage } from "./sniff.js";
import { taskView } from "./tasks.js";

/** Object URLs of the current thumbnails; all revoked whenever the selection is replaced. */
class Thumbnails {
  constructor() {
    this.urls = [];
  }
  make(file) {
    const url = URL.createObjectURL(file);
    this.urls.push(url);
    return url;
  }
  revokeAll() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }
}

function tile(file, index) {
  const status = h("div", { class: "tile-status", "aria-live": "polite" }, h("span", { class: "pending" }, "waiting…"));
  const frame = h("div", { class: "thumb-frame" });
  const tileEl = h(
    "li",
    { class: "tile", dataset: { index: String(index), filename: file.name } },
    frame,
    h("p", { class: "filename", title: file.name }, file.name),
    status,
  );
  return { el: tileEl, frame, status, file };
}

function showPrediction(view, t, prediction, explainer) {
  t.el.classList.add("done");
  for (const old of t.frame.querySelectorAll(".points-overlay, .mask-overlay, .explain-overlay")) old.remove();
  clear(
    t.status,
    view.tile(prediction, { file: t.file, frame: t.frame, img: t.frame.querySelector("img.thumb") }),
    explainer,
  );
}

function showTileError(t, err) {
  t.el.classList.add("failed");
  clear(t.status, errorBox(err));
}

export function renderVision(root, detail) {
  const view = taskView(detail);
  if (!view || !view.tile) {
    root.append(errorBox(`this page cannot show an image model whose task is ${detail.task}; the API serves it (see API docs)`));
    return null;
  }
  const schema = detail.input_schema || {};
  const accept = (schema.accepted_types || ["image/*"]).join(",");
  const signatures = compileSignatures(schema.signatures);
  const thumbs = new Thumbnails();
  let generation = 0;
  let inflight = null;
  let selected = [];

  const input = h("input", { id: "image-files", name: "files", type: "file", multiple: true, accept, class: "file-input" });
  const controls = view.controls(detail, { place: "images", id: "" });
  const grid = h("ul", { id: "tiles", class: "tiles", "aria-label": "Selected images" });
  const summary = h("div", { id: "vision-summary", "aria-live": "polite" });
  const drop = h(
    "div",
    { class: "dropzone", id: "dropzone" },
    h("label", { for: "image-files" }, h("strong", {}, "Choose images"), " or drop them here"),
    input,
    h("p", { class: "hint" }, `JPEG, PNG, GIF, BMP, WEBP or TIFF; resized to ${(schema.image_size || []).join("×") || "the model's size"}.`),
  );

  async function select(files) {
    selected = files;
    const mine = ++generation;
    if (inflight) inflight.abort();
    thumbs.revokeAll();
    clear(summary);
    const tiles = files.map(tile);
    clear(grid, tiles.map((t) => t.el));
    if (!tiles.length) return;
    // Sniff every file (12 bytes each) before any <img> exists, so a non-image never shows a broken icon.
    const kinds = await Promise.all(tiles.map((t) => sniffImage(t.file, signatures).catch(() => null)));
    if (mine !== generation) return;
    const images = [];
    tiles.forEach((t, i) => {
      if (!kinds[i]) {
        t.frame.append(h("span", { class: "no-thumb", "aria-hidden": "true" }, "?"));
        showTileError(t, NOT_AN_IMAGE(t.file.name));
        return;
      }
      const img = h("img", { class: "thumb", src: thumbs.make(t.file), alt: t.file.name, decoding: "async" });
      img.addEventListener("error", () => img.replaceWith(h("span", { class: "no-thumb" }, "no preview")), { once: true });
      t.frame.append(img);
      images.push(t);
    });
    if (!images.length) return;
    inflight = new AbortController();
    const abort = inflight.signal;
    for (const t of images) clear(t.status, h("span", { class: "pending", role: "status" }, h("span", { class: "spinner" }), "predicting…"));
    await busy(grid, null, predictAll(images, mine, abort));
  }

  async function predict(tiles, abort) {
    const form = new FormData();
    for (const t of tiles) form.append("files", t.file, t.file.name);
    const query = Object.assign({}, ...controls.map((c) => c.query()));
    return api.predictImages(detail.name, form, { query, signal: abort });
  }

  // Each image's explanation is asked for on its own, and stops when the selection or the page goes.
  const explainerOf = (t, abort) => imageExplainer(detail, { file: t.file, frame: t.frame, signal: abort });

  async function predictAll(images, mine, abort) {
    try {
      const response = await predict(images, abort);
      if (mine !== generation) return;
      response.predictions.forEach((p, i) => showPrediction(view, images[i], p, explainerOf(images[i], abort)));
      summary.textContent = `${images.length} image(s) predicted in one request.`;
    } catch (err) {
      if (err.name === "AbortError" || mine !== generation) return;
      const namesAFile = images.some((t) => (err.detail || "").includes(t.file.name));
      if ((err.status !== 415 && err.status !== 422) || !namesAFile) {
        for (const t of images) clear(t.status);
        clear(summary, errorBox(err));
        return;
      }
      // One bad file fails the whole batch (e.g. a corrupt image with a valid header): ask again one file
      // at a time so each tile shows the API's own verdict on its file.
      summary.textContent = "One file was refused; predicting each image on its own to say which.";
      const outcomes = await Promise.all(
        images.map(async (t) => {
          try {
            const single = await predict([t], abort);
            if (mine === generation) showPrediction(view, t, single.predictions[0], explainerOf(t, abort));
            return true;
          } catch (e) {
            if (e.name !== "AbortError" && mine === generation) showTileError(t, e);
            return false;
          }
        }),
      );
      if (mine !== generation) return;
      const ok = outcomes.filter(Boolean).length;
      summary.textContent = `${ok} of ${images.length} image(s) predicted; the API refused ${images.length - ok} (see each file).`;
    }
  }

  input.addEventListener("change", () => select([...input.files]));
  for (const type of ["dragenter", "dragover"])
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = [...(event.dataTransfer?.files || [])];
    if (files.length) select(files);
  });
  const rerun = h("button", { type: "button", class: "secondary", onclick: () => select(selected) }, "Predict again");
  // A changed control (top-k, a threshold) answers again for the images already shown.
  for (const c of controls)
    c.input.addEventListener("change", () => {
      if (selected.length && c.input.reportValidity()) select(selected);
    });

  root.append(
    h(
      "section",
      { "aria-labelledby": "vision-title" },
      h("h2", { id: "vision-title" }, view.title),
      drop,
      h("p", { class: "inline-field task-controls" }, controls.map((c) => c.el), rerun),
      summary,
      grid,
    ),
  );
  return () => {
    generation++;
    if (inflight) inflight.abort();
    thumbs.revokeAll();
  };
}
