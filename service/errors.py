"""Every domain error and every user-facing message of the service, in one place.

The registry, loaders and predictors raise these and know nothing about HTTP; each front door maps them to
its own wire format (`service.api.problems` for /api/v1: problem+json). The messages live here so tests
can assert them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MSG_MODEL_NOT_FOUND = "model {name!r} does not exist"
MSG_WRONG_KIND = "model {name!r} is a {kind} model, not a {wanted} one"
# What /api/v1 says for a WrongModelKind: the model exists, and this is the path that serves it.
MSG_WRONG_KIND_PATH = "model {name!r} is a {kind} model; use {path}"
MSG_NO_SCHEMA_FOR_VISION = (
    "model {name!r} is a vision model; it takes images, see input_schema in /api/v1/models/{name}"
)
MSG_MODEL_LOADING = "model {name!r} is still loading"
MSG_MODEL_FAILED = "model {name!r} failed to load: {reason}"
MSG_TOO_MANY_ROWS = "{count} rows sent; at most {limit} are accepted per request"
MSG_TOO_MANY_FILES = "{count} files sent; at most {limit} are accepted per request"
MSG_BODY_TOO_LARGE = "request body is larger than the {limit_mb:g} MB limit"
MSG_INVALID_ROWS = "{count} problem(s) in the submitted rows"
MSG_CSV_UNREADABLE = "the uploaded file {filename!r} is not a readable CSV: {reason}"
MSG_CSV_EMPTY = "the uploaded CSV {filename!r} has no data rows"
MSG_CSV_MISSING_COLUMNS = "the uploaded CSV {filename!r} lacks column(s): {columns}"
MSG_CSV_MEDIA = "the uploaded file {filename!r} is not CSV text"
MSG_JSON_MEDIA = "send the rows as JSON with Content-Type: application/json (got {media!r})"
MSG_NOT_AN_IMAGE = "file {filename!r} is not a supported image (JPEG, PNG, GIF, BMP, WEBP or TIFF)"
MSG_CORRUPT_IMAGE = "file {filename!r} looks like {format} but cannot be decoded: {reason}"
MSG_UNSEEN_CATEGORY = "{column}: {value!r} is not a known category; treated as missing (#na#)"
MSG_TOLERANT_MATCH = "{column}: {value!r} matched category {category!r} (ignoring whitespace and case)"
MSG_NULL_FILLED = "{column}: missing value filled with {fill:g} as the learner does"
MSG_NULL_CATEGORY = "{column}: missing value treated as #na#"
MSG_RELOAD_FAILED = "model {name!r} was not reloaded, the previous version keeps serving: {reason}"
MSG_API_KEY_MISSING = "this endpoint needs the X-API-Key header"
MSG_API_KEY_WRONG = "the X-API-Key header does not match"
MSG_PREDICT_KEY_MISSING = (
    "this endpoint needs an API key: send it as `X-API-Key: <key>` or `Authorization: Bearer <key>`"
)
MSG_PREDICT_KEY_WRONG = "the API key sent is not one of this server's keys"
MSG_RATE_LIMITED = "too many requests from this client: try again in {seconds} s"
MSG_ADMIN_DISABLED = "admin endpoints are disabled: set FASTAI_SERVE_API_KEY to enable them"
MSG_MODEL_FAULT = "model {name!r} failed while predicting ({reason}); it is marked failed until reloaded"
MSG_MODEL_OOM = "model {name!r} ran out of memory on this request; retry with fewer items"
MSG_MODEL_NAN = "the model produced non-finite probabilities"
MSG_IMAGE_TOO_LARGE = "file {filename!r} is {width}x{height} pixels; at most {limit} pixels are accepted"
MSG_IMAGE_BOMB = "file {filename!r} declares far more than {limit} pixels (a decompression bomb?); refused"
MSG_REQUEST_TIMEOUT = "the request took longer than {seconds:g} s and was stopped"
MSG_NO_REPORT = "model {name!r} has no training report (train it with `fastai-serve train` to get one)"
MSG_NO_ARTIFACT = "model {name!r} has no report artifact {artifact!r}"
MSG_EVAL_NO_TARGET = "the uploaded CSV {filename!r} lacks the target column {target!r} needed to evaluate"
MSG_EVAL_MISSING_LABELS = "{count} row(s) have no value in the target column {target!r}"
MSG_EVAL_UNKNOWN_LABELS = "label(s) not among the model's classes {classes}: {labels}"
MSG_EVAL_LABEL_COUNT = "{files} file(s) but {labels} label(s): send one `labels` field per file, in order"
MSG_EVAL_NOTHING = "send either `files` with one `labels` field each, or one zip `archive`"
MSG_EVAL_BOTH = "send either `files` with `labels` or an `archive`, not both"
MSG_EVAL_BAD_TARGETS = "{count} row(s) of the target column {target!r} are not {expected}"
MSG_EVAL_BAD_LABEL = "label {index} ({text!r}) is not {expected}"
MSG_EVAL_ARCHIVE_TASK = (
    "a zip with a folder per class labels a classifier's images; {name} is a {task} model: send `files` with "
    "one `labels` field each ({expected})"
)
MSG_V2_THRESHOLD = (
    "parameters.threshold must be a number strictly between 0 and 1, for a multi_label model only "
    "(got {value!r}; this model's task is {task})"
)
MSG_THRESHOLD_TASK = "`threshold` applies to multi_label models only; {name} is a {task} model"
MSG_ARCHIVE_NOT_ZIP = "the archive {filename!r} is not a readable zip file"
MSG_ARCHIVE_UNSAFE_PATH = "the archive holds an unsafe path {path!r} (absolute or with '..')"
MSG_ARCHIVE_NO_CLASS_FOLDERS = (
    "the archive {filename!r} has no class folders: put each image in a folder named after its class"
)
MSG_ARCHIVE_TOO_LARGE = "the archive unpacks to more than {limit_mb:g} MB"
MSG_ARCHIVE_TOO_MANY = "the archive holds {count} files; at most {limit} are accepted"
MSG_NULL_NOT_FILLABLE = (
    "missing value, and the learner has no fill value for this column (it had none missing in training)"
)
MSG_SHARE_OFF = "sharing is off: FASTAI_SERVE_NGROK_API_URL is empty"
MSG_SHARE_NO_SIDECAR = (
    "no ngrok sidecar answered at {url} ({error}); start one with `docker compose --profile public up`"
)
MSG_SHARE_TIMEOUT = "the ngrok sidecar at {url} did not answer within {timeout:g} s"
MSG_SHARE_BAD_ANSWER = "the ngrok sidecar at {url} answered {what}, not its list of tunnels"
MSG_SHARE_NO_TUNNEL = "the ngrok sidecar at {url} has no https tunnel (yet); its log says why"
# The tunnel's traffic policy (service.share_policy, `fastai-serve share-policy`, compose `public` profile).
MSG_TUNNEL_UNPROTECTED = (
    "refusing to open a public tunnel that asks nobody to sign in: set NGROK_OAUTH_PROVIDER (e.g. google, "
    "with NGROK_OAUTH_ALLOW_EMAILS or NGROK_OAUTH_ALLOW_DOMAINS) or NGROK_BASIC_AUTH=user:password; "
    "NGROK_ALLOW_ANONYMOUS=1 opens it to anyone instead"
)
MSG_TUNNEL_BOTH = "NGROK_OAUTH_PROVIDER and NGROK_BASIC_AUTH are both set: choose one way to sign in"
MSG_TUNNEL_PROVIDER = (
    "NGROK_OAUTH_PROVIDER={provider!r} is not one of the providers ngrok runs a managed OAuth app for: "
    "{providers}"
)
MSG_TUNNEL_ALLOW_WITHOUT_PROVIDER = (
    "NGROK_OAUTH_ALLOW_EMAILS and NGROK_OAUTH_ALLOW_DOMAINS need NGROK_OAUTH_PROVIDER, "
    "the sign-in that tells whose e-mail it is"
)
MSG_TUNNEL_BAD_EMAIL = "NGROK_OAUTH_ALLOW_EMAILS: {value!r} is not an e-mail address"
MSG_TUNNEL_BAD_DOMAIN = "NGROK_OAUTH_ALLOW_DOMAINS: {value!r} is not a domain name"
MSG_TUNNEL_BASIC_FORMAT = "NGROK_BASIC_AUTH must be user:password (a user name, a colon, the password)"
MSG_TUNNEL_BASIC_PASSWORD = (
    "NGROK_BASIC_AUTH: ngrok takes a password of 8 to 128 characters; this one has {length}"
)
MSG_TUNNEL_BASIC_CEL = (
    "NGROK_BASIC_AUTH: the password holds '${', which ngrok would read as an expression; choose another"
)
MSG_TUNNEL_BAD_OPT_IN = (
    "NGROK_ALLOW_ANONYMOUS={value!r}: set it to 1 to open the tunnel to anyone, or leave it empty"
)
MSG_TUNNEL_ANONYMOUS = (
    "WARNING: NGROK_ALLOW_ANONYMOUS=1: the public tunnel asks NOBODY to sign in. Anyone who finds its URL "
    "can call every route the api leaves open - every prediction too, unless FASTAI_SERVE_PREDICT_API_KEYS "
    "is set. Set NGROK_OAUTH_PROVIDER or NGROK_BASIC_AUTH to close it."
)
MSG_TUNNEL_OAUTH_ANYONE = (
    "NGROK_OAUTH_PROVIDER={provider} without NGROK_OAUTH_ALLOW_EMAILS or NGROK_OAUTH_ALLOW_DOMAINS: "
    "anyone with a {provider} account can sign in"
)
MSG_TUNNEL_OPT_IN_IGNORED = "NGROK_ALLOW_ANONYMOUS is set but the tunnel is protected ({protection}): ignored"
MSG_TUNNEL_RENDERED = "traffic policy for the public tunnel: {what}, written to {path}"
MSG_OVERLOADED = "model {name!r} is overloaded ({pending} items queued); retry shortly"
MSG_FEEDBACK_NO_LOG = (
    "feedback on {name!r} needs the payload log: set LOG_DIR (feedback is stored beside the predictions)"
)
MSG_FEEDBACK_TOO_MANY = "{count} feedback entries sent; at most {limit} are accepted per request"
MSG_FEEDBACK_TASK = "model {name!r} ({task}) takes no feedback; feedback is taken for {supported} models"
MSG_FEEDBACK_INVALID = "{count} feedback entr(y/ies) do not fit model {name!r}'s task"
MSG_EXPORT_NO_MODEL = "no model {name!r} in the store {store} (its learner is needed for the target's name)"
MSG_EXPORT_KIND = (
    "model {name!r} ({kind}, {task}): its feedback cannot be exported as a training CSV (images are logged "
    "as their sha256, not their pixels)"
)
MSG_EXPORT_NO_LOG = "no payload log to export from: pass --log-dir or set FASTAI_SERVE_LOG_DIR"
MSG_EXPORT_EMPTY = "no prediction of {name!r} in the payload log under {folder} has feedback yet"
MSG_MONITOR_NO_LOG = "monitoring needs the payload log: set LOG_DIR"
MSG_MONITOR_WINDOW = "window {window!r} is not a duration such as 30m, 1h or 7d"
MSG_REFERENCE_INPUT = "a {kind} model's reference is {expected}"
MSG_PAYLOAD_LOG_DROPPED = (
    "payload log: {count} prediction(s) not logged ({why}); predictions go on. Log folder: {folder}"
)
# Explanations (`service/explain`): they run beside predictions, with their own limits.
MSG_EXPLAIN_UNSUPPORTED = (
    "model {name!r} is a {kind} model ({task}); explanations are served for {supported} models"
)
MSG_EXPLAIN_METHOD = "model {name!r} ({kind}) explains with {methods}, not {method!r}"
MSG_EXPLAIN_TARGET = "model {name!r} has no {what} {target!r}; choose one of: {choices}"
MSG_EXPLAIN_PNG_ONE_FILE = "Accept: image/png answers one image's overlay; {count} files were sent"
MSG_EXPLAIN_TOO_MANY = "{count} items sent to explain; at most {limit} are explained per request"
MSG_EXPLAIN_OVERLOADED = (
    "explanations are busy ({pending} requests running or queued); retry shortly "
    "(predictions are not affected)"
)
MSG_EXPLAIN_ENCODER = (
    "model {name!r}: token attributions need an encoder that takes embeddings (fastai's AWD_LSTM or "
    "AWD_QRNN: forward(..., from_embeds=True)); found {found}"
)
MSG_EXPLAIN_NO_LAYER = (
    "model {name!r}: no convolutional layer keeps a spatial map at the input size {size}; "
    "Grad-CAM needs one, use method=integrated_gradients"
)
MSG_REQUEST_INVALID = "{count} problem(s) in the request"
# Ray Serve (service.rayserve).
MSG_VERSION_GONE = "model {name!r} was reloaded while this request was prepared; retry it"
MSG_REPLICA_LOST = "the replica running this request for model {name!r} was lost ({reason}); retry it"
MSG_NO_DEPLOYMENT = "model {name!r} has no deployment in this Ray application; redeploy to serve it"
MSG_ROLLOUT_TIMEOUT = "model {name!r}: {held} of {running} replica(s) loaded the new version in {seconds:g} s"
MSG_RAY_UNPLACEABLE = (
    "Ray cannot place {replicas} replica(s) of {cpus:g} CPU each ({needed:g} CPUs): the cluster has {free:g} "
    "free ({nodes}). Lower FASTAI_SERVE_RAY_NUM_CPUS (unset sizes it to fit), serve fewer replicas "
    "(--replicas, model.json), or add nodes"
)
MSG_RAY_FITTED = "{replicas} replica(s) of {cpus:g} CPU each fitted the cluster's free CPUs when deployed"
MSG_RAY_WAITING = "Ray application {app!r} is not running after {seconds:.0f} s: {waiting}. {placement}"
MSG_CLI_NO_RAY = "--ray needs the ray extra: pip install -e '.[ray]' ({reason})"
MSG_CLI_RAY_WORKERS = "--ray and --workers do not mix: on Ray, use --replicas (each model's own replicas)"
MSG_CLI_RAY_GRPC = (
    "--grpc-port with --ray needs RAY_FRONT=local: behind Serve's proxy the Open Inference Protocol is "
    "served over HTTP (/v2) only"
)
MSG_INTERNAL = "internal error; the request was not processed (see the server log)"

# Loading a model from the store.
MSG_NO_LEARNER_FILE = "no model.pkl or export.pkl in {folder}"
MSG_SHA_MISMATCH = "sha256 of {file} is {actual}, the manifest says {expected}; refusing to unpickle it"
MSG_BAD_MANIFEST = "model.json is not valid JSON: {reason}"
MSG_SELF_CHECK = (
    "the learner loaded but cannot predict one input built from its own schema ({reason}); it was "
    "probably exported by {made_by}: check it predicts there and re-export it with fastai 2.8"
)
MSG_UNSUPPORTED_LEARNER = (
    "this learner is not one the service can serve faithfully (found {found}); served: {supported}"
)
MSG_NOT_SERVED_YET = (
    "this is a {learner} learner ({source}), which this version recognises but does not serve yet; "
    "served: {supported}"
)
MSG_POINTS_RESIZE = (
    "a points model needs fastai's Resize as its item transform to map points back to the uploaded image "
    "(found {found})"
)
# Segmentation (unet_learner with MaskBlock): its codes, its masks in and out.
MSG_SEGMENTATION_RESIZE = (
    "a segmentation model needs fastai's Resize as its item transform to map masks back to the uploaded "
    "image (found {found})"
)
MSG_SEGMENTATION_CODES = (
    "the learner's codes {codes} name {count} class(es) but its model gives {width} per pixel; re-export it "
    "with MaskBlock(codes=...) matching unet_learner's n_out"
)
MSG_SEGMENTATION_TOO_MANY = "a segmentation model of {count} classes: masks are 8-bit, at most 256 classes"
MSG_MASK_CROPPED = (
    "the learner's centre crop showed the model {seen_w}x{seen_h} of this {width}x{height} image; mask "
    "pixels outside that part repeat the nearest predicted pixel"
)
MSG_MASK_PNG_ONE_FILE = (
    "Accept: image/png answers with one mask PNG, so send exactly one file ({count} sent); for several "
    "images ask for JSON, whose items carry each mask as `mask_png`"
)
MSG_EVAL_MASKS_TASK = (
    "`masks` label a segmentation model's images; {name} is a {task} model: send one `labels` field per "
    "file ({expected})"
)
MSG_EVAL_NEEDS_MASKS = (
    "{name} is a segmentation model: send one `masks` PNG per file (8-bit, one class index per pixel, the "
    "image's size), in the same order, instead of `labels` or an archive"
)
MSG_EVAL_MASK_COUNT = "{files} file(s) but {masks} mask(s): send one `masks` PNG per file, in order"
MSG_MASK_NOT_INDEXED = (
    "mask {filename!r} is a {mode} image; a mask has one channel, a class index per pixel (8-bit grey or "
    "palette PNG)"
)
MSG_MASK_SIZE = "mask {filename!r} is {mask_w}x{mask_h} pixels but its image {image!r} is {width}x{height}"
MSG_MASK_OUT_OF_RANGE = (
    "mask {filename!r} holds class index(es) {values}; this model has {count} classes (0 to {last}): "
    "{classes}"
)
MSG_V2_MASK_SIZES = (
    "output 'mask' is one [N, H, W] tensor, so the images of one request must share a size; got {sizes} "
    "(width x height): send images of different sizes in separate requests"
)
MSG_NOT_A_LEARNER = "{file} does not hold a fastai Learner (found {type})"
MSG_OUTSIDE_STORE = "{file} is outside the model store; only files inside it are ever unpickled"
MSG_OLD_FASTAI = (
    "this learner was probably exported by {made_by} and could not be loaded with fastai 2.8 even after "
    "compatibility fixes ({reason}). Load it in the fastai version that made it, check it predicts, and "
    "re-export it with `learn.export()` from fastai 2.8 (or report the error with the file's origin)."
)
MSG_MISSING_MODULE = (
    "the learner needs the Python module {module!r}, which the server cannot import (probably exported by "
    "{made_by}). Functions and classes the learner was built with must be importable where it is served: "
    "install the package that defines them, or define them in a module on the server's PYTHONPATH."
)
MSG_DEVICE_SETTING = "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}"
MSG_NO_CUDA = "device {value!r} was requested but CUDA is not available on this machine"
MSG_NO_SUCH_CUDA = "device {value!r} was requested but only {count} CUDA device(s) exist"
# Which runtime runs a model's forward (FASTAI_SERVE_RUNTIME), and why when it is not ONNX Runtime.
MSG_RUNTIME_TORCH_SETTING = "FASTAI_SERVE_RUNTIME=torch"
MSG_RUNTIME_NO_FAST_PATH = (
    "fastai's own pipeline (test_dl + get_preds): this learner's transforms have no fast path"
)
MSG_RUNTIME_NO_CUDA_PROVIDER = "ONNX Runtime has no CUDA execution provider here; torch serves on {device}"
MSG_RUNTIME_EXPORT_FAILED = "ONNX export failed: {reason}"
MSG_RUNTIME_MISMATCH = "ONNX Runtime differs from torch: {reason}"
MSG_RUNTIME_FALLBACK = "torch ({reason})"
MSG_RUNTIME_ONNX = "ONNX Runtime {version}, {threads} thread(s), {source}; parity with torch {diff:.1e}"
MSG_PRECISION_FP16 = "torch, float16 autocast (FASTAI_SERVE_PRECISION=fp16); parity with fp32 {diff:.1e}"
MSG_PRECISION_FP32 = "fp32: FASTAI_SERVE_PRECISION=fp16 not applied ({reason}); {note}"
MSG_PRECISION_CPU = "float16 is for CUDA devices, this model runs on {device}"
MSG_RUNTIME_REQUIRED = "FASTAI_SERVE_RUNTIME=onnx but this model cannot run in ONNX Runtime: {reason}"

# What a user gets, one line each, for training input refused before any training starts.
MSG_NO_SUCH_PATH = "{what} {path}: no such file or directory"
MSG_NOT_A_FILE = "{what} {path}: not a file (expected a CSV)"
MSG_NOT_A_FOLDER = "{what} {path}: not a folder (expected one folder of images per class)"
MSG_UNREADABLE_CSV = "{what} {path}: not a readable CSV ({reason})"
MSG_MISSING_COLUMNS = "{what} {path} has no column {missing}; its columns: {columns}"
MSG_NO_CLASS_FOLDERS = "{what} {path} has no class folders with images (expected {path}/<class>/<image>)"
MSG_EMPTY_CLASS = "{what} {path}: class folder(s) without images: {empty}"
MSG_ONE_CLASS = "{what} {path} has one class folder ({name}); a classifier needs two or more"
MSG_UNKNOWN_TEST_CLASSES = "{what} {path} has class folder(s) the training data has not: {unknown}"
MSG_UNKNOWN_ARCH = "unknown --arch {arch!r}; choose one of: {choices}"
MSG_ARCH_UNUSABLE = (
    "--arch {arch} does not work on {size}x{size} images ({reason}); try another --arch or --size"
)
MSG_UNKNOWN_MONITOR = "unknown --monitor {monitor!r}; choose one of: {choices}"
MSG_NO_BATCH = (
    "only {n} training {items} once test and validation data are held out: not one batch of --bs {bs}; "
    "use a smaller --bs or more data"
)
MSG_DOWNLOAD_FAILED = (
    "could not download fastai's {name} data set ({reason}); without the internet use --data"
)
MSG_UNTRAINED_TASK = "--task {task}: the tabular recipe trains {tasks}"
MSG_TASK_ONE_TARGET = "--task {task} takes one --target column ({shape}), got {count}: {targets}"
MSG_TASK_NOT_NUMERIC = (
    "--task regression needs numeric --target columns: {what} column {column!r} holds {value!r}; "
    "a column of labels is --task classification (or multi_label, labels joined by ';')"
)
MSG_TARGET_IS_FEATURE = (
    "--target column(s) {columns} also named as features (--cat/--cont): a model would see the answer"
)
MSG_NO_LABELS = (
    "--target {target!r} (multi_label) holds no labels in {what}; expected labels joined by ';' (e.g. a;b)"
)
MSG_LABEL_IS_FEATURE = (
    "label(s) {labels} of --target {target!r} are also feature columns (--cat/--cont); each label becomes "
    "a target column of its own, so rename the label or the column"
)
MSG_UNKNOWN_TEST_LABELS = "{what} {path}: label(s) in {target!r} the training data has not: {unknown}"
MSG_NO_MASKS = (
    "--data {path} has no images with masks (expected {path}/images/<name> and {path}/masks/<name>, one "
    "class index per pixel)"
)
MSG_UNKNOWN_SEG_ARCH = "unknown --arch {arch!r} for segmentation; choose one of: {choices}"
MSG_BAD_Y_RANGE = "--y-range takes two numbers, low < high; got {low:g} {high:g}"
MSG_UNKNOWN_DEMO = "unknown demo model(s) {names}; the demo models are: {choices}"

# Text models (`inference/text.py`, `api/routes/text.py`).
MSG_TOO_MANY_TEXTS = "{count} texts sent; at most {limit} are accepted per request"
MSG_TEXT_TOO_LONG = "text {index} has {length} characters; at most {limit} are accepted (MAX_TEXT_CHARS)"
MSG_TEXT_EMPTY = "{count} text(s) are empty or whitespace-only (index {indices}); send the text to classify"
MSG_TEXT_INVALID = (
    "{count} item(s) are not usable texts: empty, whitespace-only or not a string (index {indices})"
)
MSG_TEXT_UNKNOWN_TOKENS = "{share} of the tokens are unknown to the model (xxunk)"
MSG_TEXT_NO_ENCODER = (
    "a text classifier is served as fastai's SentenceEncoder then PoolingLinearClassifier (found {found}); "
    "its padding rules are what keep each text's answer independent of its batch"
)
MSG_TEXT_NO_TOKENIZER = (
    "a text learner needs fastai's Tokenizer and Numericalize (with its vocab) as its input transforms "
    "(found {found})"
)
MSG_TEXT_NO_ROWS = "{what} {path}: no row has both a text in {text!r} and a label in {label!r}"
MSG_TEXT_ONE_CLASS = (
    "{what} {path}: column {label!r} holds one label ({name}); a classifier needs two or more"
)
MSG_TEXT_SAME_COLUMN = "--text-col and --label-col are both {column!r}: a model would see the answer"
MSG_TEXT_REFIT_FROM_SCRATCH = (
    "--refit trains a classifier from scratch once more on the validation texts too; "
    "it cannot be combined with --lm-epochs or --gradual (the language model would need its own refit)"
)
MSG_OPTION_RANGE = "{option} must be {expected}, got {value}"


@dataclass
class ServiceError(Exception):
    """Base class: `status` is the HTTP status the API layer uses."""

    detail: str
    status: int = 500
    title: str = "Internal error"
    errors: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.detail


class ModelNotFound(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=404, title="Model not found")


class WrongModelKind(ServiceError):
    """The model exists but is of another kind than the path or protocol asked for (still a 404)."""

    def __init__(self, *, name: str, kind: str, wanted: str) -> None:
        self.name, self.kind, self.wanted = name, kind, wanted
        detail = MSG_WRONG_KIND.format(name=name, kind=kind, wanted=wanted)
        super().__init__(detail=detail, status=404, title="Wrong model kind")


class ModelNotReady(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=503, title="Model not ready", headers={"Retry-After": "5"})


class InvalidInput(ServiceError):
    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail=detail, status=422, title="Invalid input", errors=errors or [])


class BadRequest(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=400, title="Bad request")


class UnsupportedMedia(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=415, title="Unsupported media type")


class PayloadTooLarge(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=413, title="Payload too large")


class NotFound(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=404, title="Not found")


class ReloadFailed(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=422, title="Reload failed")


class Unauthorized(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            detail=detail, status=401, title="Unauthorized", headers={"WWW-Authenticate": "ApiKey"}
        )


class RateLimited(ServiceError):
    """A client over its `RATE_LIMIT`: refused at once, told when a request would be let through."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(
            detail=detail, status=429, title="Too many requests", headers={"Retry-After": str(retry_after)}
        )


class Forbidden(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=403, title="Forbidden")


class ModelFault(ServiceError):
    def __init__(self, detail: str, *, status: int = 500) -> None:
        headers = {"Retry-After": "1"} if status == 503 else {}
        super().__init__(detail=detail, status=status, title="Model failed", headers=headers)


class RequestTimeout(ServiceError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=504, title="Request timeout")


class Overloaded(ServiceError):
    """A model's queue is full: this request is refused at once rather than left to time out."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=503, title="Overloaded", headers={"Retry-After": "1"})


class ExplanationsUnsupported(ServiceError):
    """The model is served but not explained (its kind has no explainer): a 404 naming what is."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, status=404, title="Explanations not supported")


class LoadError(RuntimeError):
    """A learner file could not be turned into a servable learner; the message says why."""


class DeviceUnavailable(RuntimeError):
    """The configured device does not exist on this machine."""


class CliInputError(ValueError):
    """Command-line input refused: one line, no traceback (exit 2, like argparse's own errors)."""


class TrainingInputError(CliInputError):
    """Training input refused (a path, a column, an architecture, a metric)."""


class TunnelPolicyRefused(CliInputError):
    """The public tunnel's settings are refused: no traffic policy is rendered, so the agent cannot start."""


# The Open Inference Protocol (/v2): what its tensors and requests can get wrong.
MSG_V2_NO_VERSION = "model {name!r} has no version {version!r}; it serves version {serving!r}"
MSG_V2_BAD_JSON = "the inference request is not valid JSON: {reason}"
MSG_V2_BAD_REQUEST = "the inference request is malformed: {reason}"
MSG_V2_HEADER_LENGTH = (
    "Inference-Header-Content-Length is {value!r}; it must be a whole number no larger than the body "
    "({size} bytes)"
)
MSG_V2_DATATYPE = "input {name!r} has datatype {datatype!r}; this model takes {accepted} for it"
MSG_V2_UNKNOWN_DATATYPE = "input {name!r} has datatype {datatype!r}, which is not a protocol datatype"
MSG_V2_SHAPE = "input {name!r} has shape {shape}; this model takes {expected}"
MSG_V2_DATA_COUNT = "input {name!r} has shape {shape}, which needs {expected}, but {actual} were sent"
MSG_V2_DATA_TYPE = "input {name!r}: its data are not all {datatype} values ({reason})"
MSG_V2_NO_DATA = "input {name!r} has neither `data` nor `binary_data_size`"
MSG_V2_BINARY_PAST_END = "the binary data of input {name!r} runs past the end of the body"
MSG_V2_BINARY_LEFTOVER = "{count} byte(s) after the last input's binary data belong to no input"
MSG_V2_BYTES_ELEMENT = "input {name!r}: a BYTES element's 4-byte length runs past its binary data"
MSG_V2_NOT_UTF8 = "input {name!r}: element {index} is not UTF-8 text"
MSG_V2_NOT_BASE64 = "input {name!r}: element {index} is not base64 (images sent as JSON are base64 text)"
MSG_V2_UNEQUAL_N = "inputs have different numbers of rows: {counts}"
MSG_V2_MISSING_INPUTS = "missing input(s) {names}; this model takes {expected}"
MSG_V2_UNKNOWN_INPUTS = "unknown input(s) {names}; this model takes {expected}"
MSG_V2_DUPLICATE = "{what} {name!r} is given more than once"
MSG_V2_UNKNOWN_OUTPUTS = "unknown output(s) {names}; this model has {expected}"
MSG_V2_TOP_K = "parameters.top_k must be a whole number from 1 to {limit}, got {value!r}"
MSG_V2_NOT_READY = "the server is not ready: models are loading or none loaded"
MSG_GRPC_BIND = "cannot listen for gRPC on {address} (GRPC_PORT; 0 turns gRPC off): is the port in use?"
MSG_GRPC_CONTENTS = (
    "input {name!r}: send its elements either all in raw_input_contents or in `contents`, one input per "
    "raw_input_contents entry ({inputs} input(s), {raw} raw entries)"
)
MSG_GRPC_NO_CONTENTS_FIELD = (
    "input {name!r} has datatype {datatype!r}, which has no `contents` field: send it raw"
)


class RuntimeUnavailable(Exception):
    """ONNX Runtime cannot serve this model; the message says why (torch serves it instead)."""


# Collaborative filtering (service.inference.collab, /api/v1/collab).
MSG_COLLAB_UNKNOWN_ID = "{side} {value!r} is not one the learner knows ({column}); no rating"
MSG_COLLAB_MISSING_ID = "{side} is missing ({column}); no rating"
MSG_COLLAB_UNKNOWN_USER = (
    "user {value!r} is not one the learner knows ({column}, {count} users); it recommends only for the users "
    "it was trained on"
)
MSG_COLLAB_UNKNOWN_ITEM = "item {value!r} is not one the learner knows ({column}, {count} items)"
MSG_COLLAB_EXCLUDE_UNKNOWN = "exclude: {value!r} is not an item the learner knows; ignored"
MSG_COLLAB_TWO_COLUMNS = (
    "a collab learner takes a user and an item column; this one has {count} categorical column(s): {names}"
)
MSG_COLLAB_ITEMS_FILE = "{file}: {reason}; it names items (first column) and their `title`"
