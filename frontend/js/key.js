// The API key the model routes ask for when the server sets PREDICT_API_KEYS: asked for in a dialog when a
// call answers 401, kept in sessionStorage (this tab, until it closes; never localStorage or a cookie) and
// forgotten from the header. api.js sends it and decides when to ask; this module owns the key and the dialog.
import { h } from "./dom.js";

const STORAGE = "fastai-serve.api-key";
/** Fired on window whenever the stored key changes (kept or forgotten). */
export const KEY_CHANGED = "fastai-serve:api-key";

export function storedKey() {
  try {
    return sessionStorage.getItem(STORAGE) || "";
  } catch {
    return ""; // storage blocked: the key then lives only as long as the call that asked for it
  }
}

export function keepKey(key) {
  try {
    sessionStorage.setItem(STORAGE, key);
  } catch {
    /* storage blocked: nothing to keep it in */
  }
  window.dispatchEvent(new CustomEvent(KEY_CHANGED));
}

export function forgetKey() {
  try {
    sessionStorage.removeItem(STORAGE);
  } catch {
    /* storage blocked: nothing was kept */
  }
  window.dispatchEvent(new CustomEvent(KEY_CHANGED));
}

// One dialog at a time: calls that get a 401 while it is open wait for the same answer.
let asking = null;
// Where focus was last outside the dialog: a busy button (dom.js `busy`) is disabled, so it has lost focus,
// by the time its call answers 401; closing the dialog puts focus back there.
let lastFocused = null;
document.addEventListener("focusin", (event) => {
  if (!(event.target instanceof Element) || !event.target.closest("#api-key-dialog")) lastFocused = event.target;
});

function abortError() {
  return new DOMException("The user aborted a request.", "AbortError");
}

/**
 * Asks for a key; resolves to it, or to "" when the person cancels. `refused` says a key was sent and the API
 * refused it: the dialog then says so in the API's own words (`problem`, its 401).
 */
export function askForKey({ problem, refused = false, signal } = {}) {
  if (signal && signal.aborted) return Promise.reject(abortError());
  if (!asking) asking = openDialog({ problem, refused });
  const current = asking;
  current.waiters += 1;
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      reject(abortError());
      // The page that asked is gone (another route): close the dialog when nobody else waits for it.
      if (--current.waiters === 0) current.close("");
    };
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
    current.answer.then((key) => {
      if (signal) signal.removeEventListener("abort", onAbort);
      resolve(key);
    });
  });
}

function openDialog({ problem, refused }) {
  const focused = document.activeElement;
  const opener = focused && focused !== document.body ? focused : lastFocused;
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "api-key-hint",
  });
  const detail = problem && problem.detail ? problem.detail : "";
  const form = h(
    "form",
    { id: "api-key-form" },
    h("h2", { id: "api-key-title" }, "API key needed"),
    refused
      ? h(
          "div",
          { class: "error", role: "alert", id: "api-key-refused" },
          h(
            "p",
            {},
            h("strong", {}, "Key refused: "),
            detail || "the API did not accept that key",
            ". Check it and try again.",
          ),
        )
      : h(
          "p",
          { id: "api-key-reason" },
          "This server asks for an API key before it runs its models. Ask whoever runs it for one.",
        ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "api-key" }, "API key"),
      input,
      h(
        "p",
        { class: "hint", id: "api-key-hint" },
        "Sent as X-API-Key with every model call; kept in this browser tab only, until you close it or forget it.",
      ),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit" }, "Use key"),
      h("button", { type: "button", class: "secondary", onclick: () => close("") }, "Cancel"),
    ),
  );
  const dialog = h(
    "dialog",
    {
      id: "api-key-dialog",
      class: "key-dialog",
      "aria-labelledby": "api-key-title",
      "aria-describedby": refused ? "api-key-refused" : "api-key-reason",
    },
    form,
  );
  let settle;
  const state = { waiters: 0, answer: new Promise((resolve) => (settle = resolve)), close };
  let closed = false;
  function close(key) {
    if (closed) return;
    closed = true;
    if (asking === state) asking = null;
    settle(key);
    if (dialog.open) dialog.close();
    dialog.remove();
    refocus(opener);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    close(key);
  });
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault(); // Escape: close through the same path as the Cancel button
    close("");
  });
  document.body.append(dialog);
  dialog.showModal();
  input.focus();
  return state;
}

/** Focus back where it was before the dialog, unless the person has moved it since. */
function refocus(el) {
  if (!el || !el.isConnected || typeof el.focus !== "function") return;
  const unmoved = () => !document.activeElement || document.activeElement === document.body;
  if (!el.disabled) {
    el.focus({ preventScroll: true });
    return;
  }
  // A busy button (dom.js `busy`) stays disabled while its call runs: focus it once it is enabled again.
  const watch = new MutationObserver(() => {
    if (el.disabled) return;
    watch.disconnect();
    if (unmoved()) el.focus({ preventScroll: true });
  });
  watch.observe(el, { attributes: true, attributeFilter: ["disabled"] });
}

/** The header's "Forget API key" button: shown while a key is kept; forgetting it says so. */
export function renderKeyControl(slot) {
  const button = slot.querySelector("#forget-key");
  const status = slot.querySelector("#key-status");
  const sync = () => {
    button.hidden = !storedKey();
    slot.hidden = button.hidden && !status.textContent;
  };
  button.addEventListener("click", () => {
    status.textContent = "API key forgotten"; // first, so the change below keeps it shown
    forgetKey();
    document.getElementById("app")?.focus({ preventScroll: true });
  });
  window.addEventListener(KEY_CHANGED, () => {
    if (storedKey()) status.textContent = "";
    sync();
  });
  sync();
}
