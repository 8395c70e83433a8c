// Monitor page: what the model has been predicting lately (from the payload log): drift of every input
// against the reference (worst first), the predicted distribution, live scores on the feedback received,
// and the predicted distribution over time. There is no time-series endpoint, so the chart asks the
// monitor endpoint for a few cumulative windows (since now-k·step) and takes differences of counts.
import { ApiError, api } from "./api.js";
import { clear, errorBox, h, loading, num, pct, table } from "./dom.js";
import { fetchDetail, modelHeader } from "./model.js";
import { evaluationView } from "./report.js";

/** The windows the chooser offers (the API takes any duration) and their length in minutes. */
export const WINDOWS = { "15m": 15, "1h": 60, "24h": 1440, "7d": 10080 };
/** Steps of the over-time chart: few calls, each one monitor request. */
export const STEPS = 6;
const STATUS_RANK = { alert: 0, warn: 1, ok: 2 };
const SERIES_COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];

export const monitorHref = (name) => `#/models/${encodeURIComponent(name)}/monitor`;

function driftView(drift) {
  const rows = Object.entries(drift || {}).sort(
    ([a, x], [b, y]) => STATUS_RANK[x.status] - STATUS_RANK[y.status] || y.value - x.value || a.localeCompare(b),
  );
  if (!rows.length) return h("p", { class: "hint" }, "No drift yet: the model has no reference or no inputs in the window.");
  const t = table(
    ["input", "PSI", "status", "n"],
    rows.map(([feature, d]) => [feature, num(d.value, 3), d.status, d.n]),
    { caption: "Drift against the reference (PSI: < 0.1 ok, < 0.25 warn, else alert), worst first", className: "drift" },
  );
  // The rows come back in the order given; colour them by status (CSS classes drift-ok/warn/alert).
  t.querySelectorAll("tbody tr").forEach((tr, i) => {
    tr.classList.add(`drift-${rows[i][1].status}`);
    tr.dataset.feature = rows[i][0];
  });
  return t;
}

function barsView(column, dist) {
  if ("mean" in dist) {
    return h(
      "figure",
      { class: "distribution numeric", dataset: { column } },
      h("figcaption", {}, column),
      h("p", {}, `mean ${num(dist.mean)} ± ${num(dist.std)} (n = ${dist.n})`),
    );
  }
  const entries = Object.entries(dist).sort(([, a], [, b]) => b - a);
  return h(
    "figure",
    { class: "distribution", dataset: { column } },
    h("figcaption", {}, column),
    entries.map(([label, share]) =>
      h(
        "div",
        { class: "bar-row", dataset: { label } },
        h("span", { class: "bar-label" }, label),
        h("span", { class: "bar-track" }, h("span", { class: "bar", style: { width: pct(share) } })),
        h("span", { class: "bar-value" }, pct(share)),
      ),
    ),
  );
}

function predictionsView(predictions) {
  const columns = Object.entries(predictions || {});
  if (!columns.length) return h("p", { class: "hint" }, "No predictions in this window.");
  return columns.map(([column, dist]) => barsView(column, dist));
}

/** Counts per label of every categorical column: share × n (the API gives shares). */
function counts(snapshot) {
  const out = {};
  for (const [column, dist] of Object.entries(snapshot.predictions || {})) {
    if ("mean" in dist) continue;
    out[column] = Object.fromEntries(Object.entries(dist).map(([l, s]) => [l, s * snapshot.n_predictions]));
  }
  return out;
}

/** Steps oldest first: shares per label of the first categorical column, from cumulative snapshots. */
export function stepShares(snapshots) {
  const cumulative = snapshots.map(counts);
  const column = Object.keys(cumulative[cumulative.length - 1] || {})[0];
  if (!column) return { column: null, steps: [] };
  const labels = [...new Set(cumulative.flatMap((c) => Object.keys(c[column] || {})))];
  const steps = [];
  // snapshots[k] covers the last (k+1) steps; step k alone is snapshots[k] − snapshots[k−1].
  for (let k = snapshots.length - 1; k >= 0; k--) {
    const here = cumulative[k][column] || {};
    const newer = k > 0 ? cumulative[k - 1][column] || {} : {};
    const c = Object.fromEntries(labels.map((l) => [l, Math.max(0, Math.round((here[l] || 0) - (newer[l] || 0)))]));
    const n = Object.values(c).reduce((a, b) => a + b, 0);
    steps.push({ since: snapshots[k].since, n: Math.round(n), shares: Object.fromEntries(labels.map((l) => [l, n ? c[l] / n : null])) });
  }
  return { column, labels, steps };
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

function overTimeView({ column, labels, steps }) {
  if (!column) return h("p", { class: "hint" }, "No class predictions to chart.");
  const width = 480, height = 160, pad = 24;
  const x = (i) => pad + (steps.length > 1 ? (i * (width - 2 * pad)) / (steps.length - 1) : 0);
  const y = (share) => height - pad - share * (height - 2 * pad);
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "over-time", role: "img", "aria-label": `share of each ${column} per step` },
    svg("line", { x1: pad, y1: y(0), x2: width - pad, y2: y(0), stroke: "#9ca3af" }),
    svg("line", { x1: pad, y1: y(1), x2: width - pad, y2: y(1), stroke: "#e5e7eb" }),
  );
  labels.forEach((label, li) => {
    const colour = SERIES_COLOURS[li % SERIES_COLOURS.length];
    const points = steps.map((s, i) => [i, s.shares[label]]).filter(([, v]) => v !== null);
    if (points.length > 1)
      chart.append(svg("polyline", { points: points.map(([i, v]) => `${x(i)},${y(v)}`).join(" "), fill: "none", stroke: colour }));
    const group = svg("g", { class: "series", "data-label": label });
    for (const [i, v] of points) {
      const dot = svg("circle", { cx: x(i), cy: y(v), r: 3, fill: colour, class: "point", "data-step": i });
      dot.append(svg("title", {}, document.createTextNode(`${label}: ${pct(v)} (${steps[i].since})`)));
      group.append(dot);
    }
    chart.append(group);
  });
  return h(
    "figure",
    { class: "over-time-chart", dataset: { steps: steps.length } },
    h("figcaption", {}, `Predicted ${column} over time (${steps.length} steps, oldest left)`),
    chart,
    h(
      "ul",
      { class: "legend" },
      labels.map((l, li) => h("li", {}, h("span", { class: "swatch", style: { background: SERIES_COLOURS[li % SERIES_COLOURS.length] } }), l)),
    ),
  );
}

function offView(err) {
  return h(
    "div",
    { class: "monitor-off", role: "status" },
    h("p", {}, "Monitoring is off on this server."),
    h(
      "p",
      { class: "hint" },
      "Set FASTAI_SERVE_LOG_DIR to a folder (the payload log) and restart the server; predictions are then logged and this page shows their drift, distribution and live scores. ",
      err.message ? `(${err.message})` : "",
    ),
  );
}

async function snapshots(name, window, signal) {
  const stepMs = WINDOWS[window] * 60_000;
  const now = Date.now();
  const sinces = Array.from({ length: STEPS }, (_, k) => new Date(now - (k + 1) * stepMs).toISOString());
  // In order, not at once: the server reads the payload log for each; a few calls, one at a time.
  const out = [];
  for (const since of sinces) out.push(await api.monitor(name, { since }, { signal }));
  return out;
}

async function renderBody(body, name, window, signal) {
  // A window chosen while another is still loading wins: the older answer is dropped.
  const token = (body.dataset.token = String(Number(body.dataset.token || 0) + 1));
  clear(body, loading("Reading the payload log…"));
  let snaps;
  try {
    snaps = await snapshots(name, window, signal);
  } catch (err) {
    if (err.name === "AbortError" || body.dataset.token !== token) return;
    // 404 with the model known (the header loaded): the server has no payload log.
    clear(body, err instanceof ApiError && err.status === 404 ? offView(err) : errorBox(err));
    return;
  }
  if (body.dataset.token !== token) return;
  const latest = snaps[0];
  const ref = latest.reference;
  clear(
    body,
    h(
      "dl",
      { class: "monitor-counts" },
      h("dt", {}, "predictions"),
      h("dd", { id: "n-predictions" }, latest.n_predictions),
      h("dt", {}, "with feedback"),
      h("dd", { id: "n-feedback" }, latest.n_feedback),
      h("dt", {}, "since"),
      h("dd", {}, latest.since),
      h("dt", {}, "reference"),
      h("dd", { id: "reference" }, ref ? `${ref.source}, ${ref.n} rows` : "none"),
    ),
    h("section", { id: "drift" }, h("h3", {}, "Drift"), driftView(latest.drift)),
    h("section", { id: "distribution" }, h("h3", {}, "Predicted distribution"), predictionsView(latest.predictions)),
    latest.live
      ? evaluationView(latest.live, { id: "live", title: `Live scores (${latest.n_feedback} predictions with feedback)` })
      : h("section", { id: "live" }, h("h3", {}, "Live scores"), h("p", { class: "hint" }, "No feedback in this window.")),
    h("section", { id: "over-time" }, h("h3", {}, "Over time"), overTimeView(stepShares(snaps))),
  );
}

export async function renderMonitor(root, { name, signal }) {
  const detail = await fetchDetail(root, name, signal);
  if (!detail) return null;
  const body = h("div", { id: "monitor-body" });
  let window = "1h";
  const chooser = h(
    "div",
    { class: "window-chooser", role: "group", "aria-label": "window" },
    Object.keys(WINDOWS).map((w) =>
      h(
        "button",
        {
          type: "button",
          class: w === window ? "button" : "button secondary",
          dataset: { window: w },
          "aria-pressed": String(w === window),
          onclick: (event) => {
            window = w;
            for (const b of chooser.querySelectorAll("button")) {
              const on = b === event.currentTarget;
              b.className = on ? "button" : "button secondary";
              b.setAttribute("aria-pressed", String(on));
            }
            renderBody(body, name, window, signal);
          },
        },
        w,
      ),
    ),
  );
  clear(root, modelHeader(detail, { page: "monitor" }), h("h2", {}, "Monitor"), chooser, body);
  await renderBody(body, name, window, signal);
  return null;
}
