// Hash router: #/ (models), #/models/<name> (predict), #/models/<name>/report,
// #/models/<name>/monitor. No server-side routes,
// so any static server can serve this folder.
import { apiUrl } from "./api.js";
import { renderKeyControl } from "./key.js";
import { renderModelPage } from "./model.js";
import { renderModels } from "./models.js";
import { renderMonitor } from "./monitor.js";
import { renderReport } from "./report.js";
import { renderShare } from "./share.js";

const root = document.getElementById("app");
let current = { controller: null, cleanup: null };

function parse(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "models" && parts.length === 2) return { view: renderModelPage, params: { name: parts[1] } };
  if (parts[0] === "models" && parts.length === 3 && parts[2] === "report")
    return { view: renderReport, params: { name: parts[1] } };
  if (parts[0] === "models" && parts.length === 3 && parts[2] === "monitor")
    return { view: renderMonitor, params: { name: parts[1] } };
  return { view: renderModels, params: {} };
}

async function route() {
  if (current.controller) current.controller.abort();
  if (current.cleanup) current.cleanup();
  const controller = new AbortController();
  current = { controller, cleanup: null };
  const { view, params } = parse(location.hash);
  root.setAttribute("aria-busy", "true");
  try {
    const cleanup = await view(root, { ...params, signal: controller.signal });
    if (current.controller === controller) current.cleanup = cleanup || null;
    else if (cleanup) cleanup();
  } finally {
    if (current.controller === controller) root.removeAttribute("aria-busy");
  }
}

document.getElementById("docs-link").href = apiUrl("/docs");
window.addEventListener("hashchange", () => {
  route();
  root.focus({ preventScroll: true });
});
route();
renderShare(document.getElementById("share"));
renderKeyControl(document.getElementById("key-control"));
