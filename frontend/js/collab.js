// Recommender page (collab): choose a user and see the items the model scores best for them (titles when
// the model folder has them, else ids), "more like this" for any item shown (cosine similarity of the
// learner's item embeddings), and one user–item pair's predicted rating, shown by the rating task's view.
import { api } from "./api.js";
import { busy, clear, errorBox, h, loading, num } from "./dom.js";
import { taskView } from "./tasks.js";

const DEFAULT_N = 10;
const MAX_N = 100;

const ids = (schema, key) => ({ name: schema?.[key]?.name || key, count: schema?.[key]?.count });

function idHint(what, { name, count }) {
  const known = typeof count === "number" ? `${num(count)} ${what}s known` : `a ${what} the model knows`;
  return `${known}; an id as in the training data's ${name} column.`;
}

/** One labelled text input for a user or item id; the datalist offers the ids this page has shown. */
function idField({ id, label, hint, list }) {
  const input = h("input", {
    id,
    name: id,
    type: "text",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    list,
    "aria-describedby": `${id}-hint`,
  });
  const el = h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    h("span", { class: "hint", id: `${id}-hint` }, hint),
  );
  return { el, input };
}

function countField({ id, label }) {
  const input = h("input", {
    id,
    name: "n",
    type: "number",
    min: "1",
    max: String(MAX_N),
    step: "1",
    value: String(DEFAULT_N),
    inputmode: "numeric",
    required: true,
  });
  return { el: h("div", { class: "field" }, h("label", { for: id }, label), input), input };
}

/** An item as a person reads it: its title when the API sends one, else its id. */
const itemName = (entry) => (entry.title ? String(entry.title) : String(entry.item));

export function renderCollab(root, detail, { signal }) {
  const view = taskView(detail);
  if (!view || !view.row) {
    root.append(errorBox(`this page cannot show a recommender whose task is ${detail.task}; the API serves it (see API docs)`));
    return null;
  }
  const schema = detail.input_schema || {};
  const users = ids(schema, "user");
  const items = ids(schema, "item");
  // Ids this page has shown (items listed, users asked for): offered as suggestions in the id inputs.
  const seenUsers = h("datalist", { id: "seen-users" });
  const seenItems = h("datalist", { id: "seen-items" });
  const remember = (list, values) => {
    const known = new Set([...list.options].map((o) => o.value));
    for (const value of values.map(String)) if (!known.has(value)) list.append(h("option", { value }));
  };

  // -- more like this -------------------------------------------------------------------------------------
  const similarResult = h("div", { class: "result", id: "similar", "aria-live": "polite" });
  let similarAbort = null;

  function itemLine(entry, { scoreLabel, score }) {
    const name = itemName(entry);
    return h(
      "li",
      { class: "item-entry", dataset: { item: String(entry.item), score: String(score) } },
      h(
        "span",
        { class: "item-line" },
        h("span", { class: "item-name" }, name),
        entry.title ? h("span", { class: "item-id" }, `id ${entry.item}`) : null,
        h("span", { class: "item-score" }, `${scoreLabel} ${num(score, 3)}`),
        h(
          "button",
          {
            type: "button",
            class: "secondary more-like",
            "aria-label": `More like ${name}`,
            onclick: () => showSimilar(entry),
          },
          "More like this",
        ),
      ),
    );
  }

  async function showSimilar(entry) {
    if (similarAbort) similarAbort.abort();
    similarAbort = new AbortController();
    const abort = similarAbort.signal;
    const n = Number(count.input.value) || DEFAULT_N;
    clear(similarResult, loading(`Finding items like ${itemName(entry)}…`));
    similarResult.scrollIntoView({ block: "nearest" });
    try {
      const response = await busy(similarResult, null, api.similar(detail.name, { item: entry.item, n }, { signal: abort }));
      remember(seenItems, response.items.map((e) => e.item));
      const source = { ...entry, title: entry.title ?? response.title };
      clear(
        similarResult,
        h("h3", { id: "similar-title" }, `More like ${itemName(source)}`),
        h("p", { class: "hint" }, "Cosine similarity of the model's item embeddings (1 = the same direction)."),
        h(
          "ol",
          { class: "item-list", id: "similar-items", "aria-labelledby": "similar-title" },
          response.items.map((e) => itemLine(e, { scoreLabel: "similarity", score: e.similarity })),
        ),
      );
    } catch (err) {
      if (err.name !== "AbortError") clear(similarResult, errorBox(err));
    }
  }

  // -- recommend ------------------------------------------------------------------------------------------
  const user = idField({ id: "rec-user", label: `User (${users.name})`, hint: idHint("user", users), list: "seen-users" });
  const count = countField({ id: "rec-n", label: "How many items" });
  const recommendResult = h("div", { class: "result", id: "recommendations", "aria-live": "polite" });
  const recommendButton = h("button", { type: "submit" }, "Recommend");
  const recommendForm = h(
    "form",
    { id: "recommend-form" },
    h("div", { class: "pair-fields" }, user.el, count.el),
    h("p", { class: "actions" }, recommendButton),
  );
  recommendForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const who = user.input.value.trim();
    const n = Number(count.input.value);
    if (similarAbort) similarAbort.abort();
    clear(similarResult); // its items came from the last list; a new list starts without them
    clear(recommendResult, loading(`Scoring every item for user ${who}…`));
    try {
      const response = await busy(recommendResult, recommendButton, api.recommend(detail.name, { user: who, n }, { signal }));
      remember(seenUsers, [who]);
      remember(seenItems, response.items.map((e) => e.item));
      clear(
        recommendResult,
        h("h3", { id: "recommend-title" }, `Top ${response.items.length} for user ${response.user ?? who}`),
        h("p", { class: "hint" }, "The items the model scores best for this user (its predicted rating)."),
        h(
          "ol",
          { class: "item-list", id: "recommended-items", "aria-labelledby": "recommend-title" },
          response.items.map((e) => itemLine(e, { scoreLabel: "score", score: e.score })),
        ),
      );
    } catch (err) {
      if (err.name !== "AbortError") clear(recommendResult, errorBox(err));
    }
  });

  // -- one pair's rating ----------------------------------------------------------------------------------
  const pairUser = idField({ id: "pair-user", label: `User (${users.name})`, hint: idHint("user", users), list: "seen-users" });
  const pairItem = idField({ id: "pair-item", label: `Item (${items.name})`, hint: idHint("item", items), list: "seen-items" });
  const ratingResult = h("div", { class: "result", id: "rating-result", "aria-live": "polite" });
  const ratingButton = h("button", { type: "submit" }, "Predict rating");
  const range = Array.isArray(schema.rating_range) ? schema.rating_range : null;
  const ratingForm = h(
    "form",
    { id: "rating-form" },
    h("div", { class: "pair-fields" }, pairUser.el, pairItem.el),
    range ? h("p", { class: "hint" }, `Ratings lie between ${num(range[0])} and ${num(range[1])}.`) : null,
    h("p", { class: "actions" }, ratingButton),
  );
  ratingForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const pair = { user: pairUser.input.value.trim(), item: pairItem.input.value.trim() };
    clear(ratingResult, loading("Predicting…"));
    try {
      const response = await busy(ratingResult, ratingButton, api.predictPairs(detail.name, [pair], { signal }));
      const [item] = response.predictions;
      clear(
        ratingResult,
        h(
          "div",
          { class: "prediction", id: "rating-prediction" },
          view.row(item),
          item.warnings?.length
            ? h(
                "div",
                { class: "warnings" },
                h("h3", {}, "Warnings"),
                h("ul", {}, item.warnings.map((w) => h("li", { class: "warning" }, w))),
              )
            : h("p", { class: "hint" }, "No warnings for this pair."),
        ),
      );
    } catch (err) {
      if (err.name !== "AbortError") clear(ratingResult, errorBox(err));
    }
  });

  root.append(
    seenUsers,
    seenItems,
    h(
      "div",
      { class: "collab-grid" },
      h(
        "section",
        { id: "recommend", "aria-labelledby": "recommend-heading" },
        h("h2", { id: "recommend-heading" }, "Recommend items for a user"),
        recommendForm,
        recommendResult,
        similarResult,
      ),
      h(
        "section",
        { id: "rating", "aria-labelledby": "rating-heading" },
        h("h2", { id: "rating-heading" }, view.title),
        ratingForm,
        ratingResult,
      ),
    ),
  );
  return () => {
    if (similarAbort) similarAbort.abort();
  };
}
