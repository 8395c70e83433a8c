// The only module that talks HTTP: every call goes to the public API of docs/API.md.
import { askForKey, forgetKey, keepKey, storedKey } from "./key.js";

const config = window.FASTAI_SERVE_CONFIG || {};
export const API_BASE = String(config.apiBase || "").replace(/\/+$/, "");

/** An API error: `detail` is the problem+json detail, shown to the user verbatim. */
export class ApiError extends Error {
  constructor({ status, title, detail, errors }) {
    super(detail || title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.title = title || "";
    this.detail = detail || title || `HTTP ${status}`;
    this.errors = Array.isArray(errors) ? errors : [];
  }
}

/** Absolute URL of an API path (or of a URL the API handed out, such as a report artifact). */
export function apiUrl(path) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return path;
  return API_BASE + path;
}

export const enc = encodeURIComponent;

/** `path?k=v&…` from the query's non-empty values (a task's controls give them: top_k, threshold); an
 * array value repeats its key (`exclude=a&exclude=b`). */
export function withQuery(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query))
    for (const one of Array.isArray(value) ? value : [value])
      if (one !== undefined && one !== null && one !== "") params.append(key, String(one));
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      const body = await response.json();
      return new ApiError({ ...body, status: response.status });
    } catch {
      /* fall through: a JSON type with a broken body */
    }
  }
  const text = type.startsWith("text/plain") ? (await response.text()).slice(0, 300) : "";
  return new ApiError({ status: response.status, title: response.statusText, detail: text || undefined });
}

/** True for a URL of this API (the key is never sent anywhere else, e.g. a URL the API handed out). */
function isApiUrl(url) {
  if (API_BASE) return url.startsWith(`${API_BASE}/`);
  return !/^[a-z][a-z0-9+.-]*:/i.test(url);
}

async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError({ status: 0, detail: `cannot reach the API at ${url} (${err.message})` });
  }
}

/**
 * One call; with a kept API key it carries `X-API-Key`. A 401 asks the person for a key (key.js) and sends
 * the call again with it, until the API takes one (then it is kept) or the person cancels (the 401 is thrown,
 * so the page shows the API's detail like any other error).
 */
async function request(path, { method = "GET", body, headers = {}, signal, accept = "application/json" } = {}) {
  const url = apiUrl(path);
  let key = isApiUrl(url) ? storedKey() : "";
  for (;;) {
    const keyHeader = key ? { "X-API-Key": key } : {};
    const response = await send(url, { method, body, signal, headers: { Accept: accept, ...headers, ...keyHeader } });
    if (response.ok) {
      if (key && key !== storedKey()) keepKey(key);
      return response;
    }
    const problem = await problemOf(response);
    if (response.status !== 401 || !isApiUrl(url)) throw problem;
    const kept = storedKey();
    if (kept && kept !== key) {
      key = kept; // another call was given a key while this one was on its way: try that first
      continue;
    }
    if (kept) forgetKey(); // the kept key is refused now (the server's keys changed)
    key = await askForKey({ problem, refused: Boolean(key), signal });
    if (!key) throw problem;
  }
}

export async function getJSON(path, options = {}) {
  return (await request(path, options)).json();
}

export async function postJSON(path, payload, options = {}) {
  const headers = { "Content-Type": "application/json" };
  return (await request(path, { ...options, method: "POST", body: JSON.stringify(payload), headers })).json();
}

/** POST multipart form data; `accept` picks JSON (parsed) or another type (returned as text). */
export async function postForm(path, form, { accept = "application/json", ...options } = {}) {
  const response = await request(path, { ...options, method: "POST", body: form, accept });
  return accept === "application/json" ? response.json() : response.text();
}

/** GET that resolves to null on 404: optional resources such as reports and the share URL. */
export async function getOptional(path, options = {}) {
  try {
    return await getJSON(path, options);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

export const api = {
  models: (o) => getJSON("/api/v1/models", o),
  model: (name, o) => getJSON(`/api/v1/models/${enc(name)}`, o),
  predictRows: (name, rows, { query, ...o } = {}) =>
    postJSON(withQuery(`/api/v1/tabular/${enc(name)}/predict`, query), { rows }, o),
  predictCsv: (name, form, { query, kind = "tabular", ...o } = {}) =>
    postForm(withQuery(`/api/v1/${enc(kind)}/${enc(name)}/predict/csv`, query), form, o),
  predictImages: (name, form, { query, ...o } = {}) =>
    postForm(withQuery(`/api/v1/vision/${enc(name)}/predict`, query), form, o),
  predictTexts: (name, texts, { query, ...o } = {}) =>
    postJSON(withQuery(`/api/v1/text/${enc(name)}/predict`, query), { texts }, o),
  explainImages: (name, form, { query, ...o } = {}) =>
    postForm(withQuery(`/api/v1/vision/${enc(name)}/explain`, query), form, o),
  explainRows: (name, rows, { query, ...o } = {}) =>
    postJSON(withQuery(`/api/v1/tabular/${enc(name)}/explain`, query), { rows }, o),
  explainTexts: (name, texts, { query, ...o } = {}) =>
    postJSON(withQuery(`/api/v1/text/${enc(name)}/explain`, query), { texts }, o),
  predictPairs: (name, pairs, o) => postJSON(`/api/v1/collab/${enc(name)}/predict`, { pairs }, o),
  recommend: (name, { user, n, exclude }, o) =>
    getJSON(withQuery(`/api/v1/collab/${enc(name)}/recommend`, { user, n, exclude }), o),
  similar: (name, { item, n }, o) => getJSON(withQuery(`/api/v1/collab/${enc(name)}/similar`, { item, n }), o),
  report: (name, o) => getOptional(`/api/v1/models/${enc(name)}/report`, o),
  evaluate: (kind, name, form, o) => postForm(`/api/v1/${enc(kind)}/${enc(name)}/evaluate`, form, o),
  share: (o) => getOptional("/api/v1/share", o),
  monitor: (name, query, o) => getJSON(withQuery(`/api/v1/models/${enc(name)}/monitor`, query), o),
};
