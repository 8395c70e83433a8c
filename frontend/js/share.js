// The public URL (ngrok) when the API reports one, with a copy button; nothing otherwise.
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
  );
  slot.hidden = false;
}
