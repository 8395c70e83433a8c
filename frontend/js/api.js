// The only module that talks HTTP: every call goes to the public API of docs/API.md.

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

/** `path?k=v&…` from the query's non-empty values (a task's controls give them: top_k, threshold). */
export function withQuery(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query))
    if (value !== undefined && value !== null && value !== "") params.append(key, String(value));
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

async function request(path, { method = "GET", body, headers = {}, signal, accept = "application/json" } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path), { method, body, signal, headers: { Accept: accept, ...headers } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError({ status: 0, detail: `cannot reach the API at ${apiUrl(path)} (${err.message})` });
  }
  if (!response.ok) throw await problemOf(response);
  return response;
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
  predictCsv: (name, form, { query, ...o } = {}) =>
    postForm(withQuery(`/api/v1/tabular/${enc(name)}/predict/csv`, query), form, o),
  predictImages: (name, form, { query, ...o } = {}) =>
    postForm(withQuery(`/api/v1/vision/${enc(name)}/predict`, query), form, o),
  report: (name, o) => getOptional(`/api/v1/models/${enc(name)}/report`, o),
  evaluate: (kind, name, form, o) => postForm(`/api/v1/${enc(kind)}/${enc(name)}/evaluate`, form, o),
  share: (o) => getOptional("/api/v1/share", o),
};
