// Tiny DOM helpers: build elements without innerHTML, so API text is never parsed as markup.

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) → element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const pct = (p) => `${(100 * p).toFixed(1)}%`;

/** A number for display: integers as is, others with `digits` significant digits. */
export function num(value, digits = 4) {
  if (typeof value !== "number") return value === null || value === undefined ? "—" : String(value);
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(digits)));
}

/** "Loading…" placeholder, announced to screen readers. */
export function loading(text = "Loading…") {
  return h("p", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

/** An API error shown verbatim: the problem+json detail, then each located error. */
export function errorBox(err, { prefix } = {}) {
  const detail = err && err.detail ? err.detail : String((err && err.message) || err);
  const box = h(
    "div",
    { class: "error", role: "alert" },
    h("p", {}, prefix ? h("strong", {}, `${prefix}: `) : null, h("span", { class: "error-detail" }, detail)),
  );
  if (err && Array.isArray(err.errors) && err.errors.length) {
    box.append(
      h(
        "ul",
        { class: "error-list" },
        err.errors.map((e) => h("li", {}, h("code", {}, (e.loc || []).join(" › ")), " ", e.msg || "")),
      ),
    );
  }
  return box;
}

/** Probability bars, most likely first. `probs` is {class: p} or [{label, probability}]. */
export function probabilityBars(probs, { limit = Infinity, caption } = {}) {
  const items = Array.isArray(probs)
    ? probs.map((p) => [p.label, p.probability])
    : Object.entries(probs).sort((a, b) => b[1] - a[1]);
  return h(
    "ul",
    { class: "probs", "aria-label": caption || "class probabilities" },
    items.slice(0, limit).map(([label, p]) =>
      h(
        "li",
        { class: "prob", dataset: { label } },
        h("span", { class: "prob-label" }, label),
        h(
          "span",
          { class: "prob-bar", role: "presentation" },
          h("span", { class: "prob-fill", style: { width: `${Math.max(0, Math.min(1, p)) * 100}%` } }),
        ),
        h("span", { class: "prob-value" }, pct(p)),
      ),
    ),
  );
}

/** A table from a header list and row arrays, scrollable sideways on narrow screens. */
export function table(headers, rows, { caption, className = "" } = {}) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "table" },
    h(
      "table",
      { class: className },
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
    ),
  );
}

/** Sets a region's busy state while a promise runs. */
export async function busy(region, button, promise) {
  region.setAttribute("aria-busy", "true");
  if (button) button.disabled = true;
  try {
    return await promise;
  } finally {
    region.removeAttribute("aria-busy");
    if (button) button.disabled = false;
  }
}

/** Input modes as tabs (one row | CSV file; texts | CSV file): `modes` = [{key, text, panel}], the first
 * selected; arrow keys move between them. Each tab is `#tab-<key>`; the panels keep their own ids. */
export function modeTabs(modes) {
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Input mode" });
  const tabs = modes.map(({ key, text, panel }) => {
    const tab = h("button", { type: "button", role: "tab", id: `tab-${key}`, "aria-controls": panel.id }, text);
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", `tab-${key}`);
    tablist.append(tab);
    return tab;
  });
  const select = (index) => {
    tabs.forEach((tab, i) => {
      tab.setAttribute("aria-selected", String(i === index));
      tab.tabIndex = i === index ? 0 : -1;
      modes[i].panel.hidden = i !== index;
    });
  };
  tabs.forEach((tab, i) => tab.addEventListener("click", () => select(i)));
  tablist.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const now = tabs.findIndex((tab) => tab.getAttribute("aria-selected") === "true");
    const next = (now + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length;
    select(next);
    tabs[next].focus();
  });
  select(0);
  return tablist;
}
