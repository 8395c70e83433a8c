// Where the API lives. Empty = the origin that served this page (the single-process default, `make run`).
// A static server or container of its own replaces this file, e.g. apiBase: "https://api.example.com"
// (that origin must then list this page's origin in FASTAI_SERVE_CORS_ORIGINS).
window.FASTAI_SERVE_CONFIG = { apiBase: "" };
