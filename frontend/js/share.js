// The public URL (ngrok) when the API reports one, with a copy button, and a warning when nothing guards it
// (the tunnel asks nobody to sign in and the model routes need no key); nothing otherwise.
import { api } from "./api.js";
import { clear, h } from "./dom.js";

async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (plain http on another host): select the text and use the legacy command.
    input.select();
    return document.execCommand && document.execCommand("copy");
  }
}

/** True only when the API says both guards are off; a server without these fields says nothing, so no warning. */
export function isUnguarded(share) {
  return Boolean(share.public_url) && share.protected === null && share.api_key_required === false;
}

function unguardedWarning() {
  return h(
    "p",
    { id: "share-warning", class: "share-warning" },
    h("strong", {}, "Warning: anyone with this URL can run your models, at your cost."),
    " The tunnel asks nobody to sign in and the API asks for no key. Set ",
    h("code", {}, "NGROK_OAUTH_PROVIDER"),
    " (with ",
    h("code", {}, "NGROK_OAUTH_ALLOW_EMAILS"),
    " or ",
    h("code", {}, "NGROK_OAUTH_ALLOW_DOMAINS"),
    ") or ",
    h("code", {}, "NGROK_BASIC_AUTH"),
    ", and ",
    h("code", {}, "FASTAI_SERVE_PREDICT_API_KEYS"),
    ", then restart.",
  );
}

export async function renderShare(slot) {
  let share;
  try {
    share = await api.share();
  } catch {
    share = null; // sharing is optional: an error here must not disturb the page
  }
  if (!share || !share.public_url) {
    slot.hidden = true;
    return;
  }
  const status = h("span", { class: "copy-status", role: "status" });
  const input = h("input", {
    id: "share-url",
    type: "text",
    readonly: true,
    value: share.public_url,
    "aria-label": "Public URL",
  });
  const button = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: async () => {
        status.textContent = (await copyText(share.public_url, input)) ? "Copied" : "Press Ctrl+C to copy";
      },
    },
    "Copy",
  );
  clear(
    slot,
    h("label", { for: "share-url" }, `Public URL${share.source ? ` (${share.source})` : ""}`),
    input,
    button,
    status,
    isUnguarded(share) ? unguardedWarning() : null,
  );
  slot.classList.toggle("unguarded", isUnguarded(share));
  slot.hidden = false;
}
