"""`fastai-serve` command line: `serve`, `train tabular|vision|text|collab|segmentation|demo`, `compare`,
`share-policy`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import Settings
    from service.training.common import FitOptions

DEMO_TABULAR = "adult-income"
DEMO_VISION = "cifar10"
DEMO_COLLAB = "movie-recommender"
DEMO_SEGMENTATION = "shapes-segmentation"
DEMO_TEXT = "reviews-sentiment"
DEMO_GROUPS = ("all", "existing", "new")
# `train tabular --task`: auto or a key of `tabular_targets.TARGET_TASKS` (spelled out: keeps --help light).
TABULAR_TASKS = ("auto", "classification", "multi_label", "regression")
# fastai's own layers use torch.jit.script at import; torch warns on every run, about nothing a user can do.
JIT_DEPRECATION = r"`torch\.jit\.script` is deprecated"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.logs import uvicorn_options
    from service.settings import get_settings
    from service.startup import cap_malloc_arenas

    # The app factory reads its settings itself (in each worker process too): the flags that concern it
    # travel as the settings' own variables. gRPC listens on --host, as HTTP does.
    if args.grpc_port is not None:
        os.environ["FASTAI_SERVE_GRPC_PORT"] = str(args.grpc_port)
    if args.host:
        os.environ["FASTAI_SERVE_HOST"] = args.host
    get_settings.cache_clear()
    settings = get_settings()
    address = args.ray or settings.ray_address
    if address:
        return _serve_on_ray(args, settings, address)
    cap_malloc_arenas(settings.malloc_arenas)
    workers = args.workers or settings.workers
    shared = None
    if workers > 1:
        # The workers inherit these: how many they are, and the folder where their metrics and
        # readiness meet (prometheus-client's multiprocess mode wants it new and empty).
        os.environ["FASTAI_SERVE_WORKERS"] = str(workers)
        shared = tempfile.mkdtemp(prefix="fastai-serve-workers-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=workers,
        **uvicorn_options(settings),
    )
    if shared is not None:
        shutil.rmtree(shared, ignore_errors=True)
    return 0


def _store(args: argparse.Namespace) -> Path:
    from service.settings import get_settings

    return Path(args.store) if args.store else get_settings().model_store


def _train_tabular(args: argparse.Namespace) -> int:
    from service.inference.tasks import Task
    from service.training import data
    from service.training.tabular import TabularRecipe, train_tabular

    if args.download:
        csv = data.downloaded("ADULT_SAMPLE") / "adult.csv"
        targets = args.target or ["salary"]
    else:
        csv = Path(args.data) if args.data else data.demo_adult_csv()
        targets = args.target or [data.ADULT_TARGET]
    recipe = TabularRecipe(
        csv=csv,
        target=targets[0] if len(targets) == 1 else targets,
        task=None if args.task == "auto" else Task(args.task),
        # The demo's features, less the columns now predicted (e.g. --target hours-per-week).
        cat_names=args.cat or [c for c in data.DEMO_ADULT_CATEGORICAL if c not in targets],
        cont_names=args.cont or [c for c in data.DEMO_ADULT_CONTINUOUS if c not in targets],
        out_dir=_store(args) / args.name,
        epochs=args.epochs,
        lr=args.lr,
        bs=args.bs,
        wd=args.wd,
        ps=args.ps,
        seed=args.seed,
        max_rows=args.max_rows,
        layers=args.layers,
        valid_pct=args.valid_pct,
        test_csv=Path(args.test) if args.test else None,
        fit=_fit_options(args),
    )
    result = train_tabular(recipe)
    print(f"{result.name}: {result.metrics} in {result.train_seconds:.1f}s -> {result.learner_path}")
    return 0


def _train_vision(args: argparse.Namespace) -> int:
    from service.training import data
    from service.training.vision import VisionRecipe, train_vision

    if args.download:
        folder = data.downloaded("CIFAR")
    else:
        folder = Path(args.data) if args.data else data.demo_cifar_folder()
    recipe = VisionRecipe(
        folder=folder,
        out_dir=_store(args) / args.name,
        arch=args.arch,
        pretrained=args.pretrained,
        epochs=args.epochs,
        lr=args.lr,
        bs=args.bs,
        size=args.size,
        seed=args.seed,
        flip=args.flip,
        augment=args.augment,
        ps=args.ps,
        label_smoothing=args.label_smoothing,
        test_folder=Path(args.test) if args.test else None,
        fit=_fit_options(args),
        valid_pct=args.valid_pct,
        small_input_stem=args.small_input_stem,
        max_per_class=args.max_per_class,
    )
    result = train_vision(recipe)
    print(f"{result.name}: {result.metrics} in {result.train_seconds:.1f}s -> {result.learner_path}")
    return 0


def _train_text(args: argparse.Namespace) -> int:
    from service.training import data
    from service.training.text import TextRecipe, train_text

    if args.download:
        csv: Path | None = data.downloaded("IMDB_SAMPLE") / "texts.csv"
    else:
        csv = Path(args.data) if args.data else None
    recipe = TextRecipe(
        out_dir=_store(args) / args.name,
        csv=csv,
        text_col=args.text_col,
        label_col=args.label_col,
        test_csv=Path(args.test) if args.test else None,
        epochs=args.epochs,
        lr=args.lr,
        lm_epochs=args.lm_epochs,
        lm_lr=args.lm_lr,
        gradual=args.gradual,
        bs=args.bs,
        seq_len=args.seq_len,
        emb_sz=args.emb_sz,
        n_hid=args.n_hid,
        n_layers=args.n_layers,
        drop_mult=args.drop_mult,
        wd=args.wd,
        label_smoothing=args.label_smoothing,
        min_freq=args.min_freq,
        max_vocab=args.max_vocab,
        seed=args.seed,
        valid_pct=args.valid_pct,
        test_pct=args.test_pct,
        max_rows=args.max_rows,
        threads=args.threads,
        refit=args.refit,
        fit=_fit_options(args),
    )
    result = train_text(recipe)
    print(f"{result.name}: {result.metrics} in {result.train_seconds:.1f}s -> {result.learner_path}")
    return 0


def _fit_options(args: argparse.Namespace) -> FitOptions:
    from service.training.common import FitOptions

    return FitOptions(
        monitor=args.monitor,
        min_delta=args.min_delta,
        early_stopping=args.early_stopping,
        patience=args.patience,
        save_best=args.save_best,
        quiet=args.quiet,
    )


def _compare(args: argparse.Namespace) -> int:
    from service.reports.compare import compare_reports

    print(compare_reports(_store(args), args.models))
    return 0


def _train_demo(args: argparse.Namespace) -> int:
    """Build the demo models that are missing (`--force` rebuilds), each moved into the store when done."""
    import signal

    from service.training.demo import build_demos

    # SIGTERM (make run's exit, docker stop) unwinds like Ctrl-C: the half-built folder and this process's
    # names on the progress board are removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    store = _store(args)
    started = time.perf_counter()
    failed = build_demos(store, group=args.only, names=args.models, force=args.force)
    print(f"demo models ({args.only}) done in {time.perf_counter() - started:.1f}s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _train_collab(args: argparse.Namespace) -> int:
    from service.errors import MSG_BAD_Y_RANGE, CliInputError
    from service.training.collab import DEMO_ITEMS, DEMO_RATINGS, CollabRecipe, train_collab

    if args.y_range is not None and not args.y_range[0] < args.y_range[1]:
        raise CliInputError(MSG_BAD_Y_RANGE.format(low=args.y_range[0], high=args.y_range[1]))
    demo = args.data is None
    recipe = CollabRecipe(
        ratings=Path(args.data) if args.data else DEMO_RATINGS,
        items=Path(args.items) if args.items else (DEMO_ITEMS if demo else None),
        out_dir=_store(args) / args.name,
        user=args.user,
        item=args.item,
        rating=args.rating,
        use_nn=args.use_nn,
        factors=args.factors,
        layers=args.layers,
        y_range=None
        if args.no_y_range
        else (args.y_range[0], args.y_range[1])
        if args.y_range
        else (0.0, 5.5),
        epochs=args.epochs,
        lr=args.lr,
        wd=args.wd,
        bs=args.bs,
        seed=args.seed,
        valid_pct=args.valid_pct,
        test_pct=args.test_pct,
        max_rows=args.max_rows,
        fit=_fit_options(args),
    )
    result = train_collab(recipe)
    print(f"{result.name}: {result.metrics} in {result.train_seconds:.1f}s -> {result.learner_path}")
    return 0


def _train_segmentation(args: argparse.Namespace) -> int:
    from service.training.segmentation import SegmentationRecipe, train_segmentation

    recipe = SegmentationRecipe(
        out_dir=_store(args) / args.name,
        folder=Path(args.data) if args.data else None,
        **({"codes": args.codes} if args.codes else {}),
        n_images=args.n_images,
        size=args.size,
        arch=args.arch,
        epochs=args.epochs,
        lr=args.lr,
        bs=args.bs,
        last_cross=args.last_cross,
        seed=args.seed,
        valid_pct=args.valid_pct,
        test_pct=args.test_pct,
        fit=_fit_options(args),
    )
    result = train_segmentation(recipe)
    print(f"{result.name}: {result.metrics} in {result.train_seconds:.1f}s -> {result.learner_path}")
    return 0


def _common(sub: argparse.ArgumentParser, *, name: str) -> None:
    sub.add_argument("--name", default=name, help="model folder name in the store")
    sub.add_argument("--store", default=None, help="model store folder (default: FASTAI_SERVE_MODEL_STORE)")
    sub.add_argument("--data", default=None, help="local data (CSV for tabular, folder for vision)")
    sub.add_argument("--download", action="store_true", help="use fastai's untar_data (needs the internet)")
    sub.add_argument("--seed", type=int, default=42, help="seeds Python, numpy, torch and the DataLoaders")
    sub.add_argument(
        "--test", default=None, help="labelled test data (CSV / folder per class) for the report"
    )
    sub.add_argument(
        "--monitor",
        default=None,
        help="what the callbacks watch: train_loss, valid_loss or a metric (classification: accuracy "
        "(default), precision_score, recall_score; multi_label: accuracy_multi (default), f1_macro; "
        "regression: rmse, mae, r2_score; default valid_loss)",
    )
    sub.add_argument("--min-delta", type=float, default=0.01, help="smallest change that counts as better")
    sub.add_argument(
        "--early-stopping", action="store_true", help="stop after --patience epochs without gain"
    )
    sub.add_argument("--patience", type=int, default=3)
    sub.add_argument("--save-best", action="store_true", help="keep the weights of the best epoch")
    sub.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (they show only when stdout is a terminal); one log line per epoch either way",
    )


def _serve_on_ray(args: argparse.Namespace, settings: Settings, address: str) -> int:
    from service.errors import MSG_CLI_NO_RAY, MSG_CLI_RAY_GRPC, MSG_CLI_RAY_WORKERS, CliInputError

    # Behind Serve's proxy gRPC is not served (the proxy serves /v2 over HTTP); GRPC_PORT from the
    # environment is ignored there, an explicit --grpc-port is a mistake worth saying so.
    if args.grpc_port and settings.ray_front == "proxy":
        raise CliInputError(MSG_CLI_RAY_GRPC)
    # The front's handle calls run on its own event loop, not a router loop in a second thread (Serve's
    # default; each hand-over waits for the GIL). Serve reads the switch when first imported.
    os.environ.setdefault("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "0")
    try:
        from service.rayserve.app import serve_on_ray
    except ImportError as exc:
        raise CliInputError(MSG_CLI_NO_RAY.format(reason=exc)) from None
    if args.workers and args.workers > 1:
        raise CliInputError(MSG_CLI_RAY_WORKERS)
    if args.replicas:
        settings = settings.model_copy(update={"ray_replicas": args.replicas})
    serve_on_ray(settings, address=address, host=args.host or settings.host, port=args.port or settings.port)
    return 0


def _feedback_export(args: argparse.Namespace) -> int:
    from service.errors import MSG_EXPORT_NO_LOG, CliInputError
    from service.monitoring.export import export_feedback
    from service.settings import get_settings

    log_dir = Path(args.log_dir) if args.log_dir else get_settings().log_dir
    if log_dir is None:
        raise CliInputError(MSG_EXPORT_NO_LOG)
    out = Path(args.out or f"{args.name}-feedback.csv")
    done = export_feedback(name=args.name, store=_store(args), log_dir=log_dir, out=out)
    print(f"{done.rows} rows ({', '.join(done.columns)}) -> {done.path}")
    return 0


def _share_policy(args: argparse.Namespace) -> int:
    from service.share_policy import TunnelSettings, policy_yaml, render_policy, render_to

    # The NGROK_* settings are the compose file's (the `public` profile passes them), not FASTAI_SERVE_*
    # ones: read here, once, and handed on.
    settings = TunnelSettings.from_env(os.environ)
    if args.out_dir is None:
        print(policy_yaml(render_policy(settings)), end="")
        return 0
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    render_to(settings, out_dir)
    return 0


def _text_parser(train: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from service.training.text import TextRecipe

    defaults = TextRecipe(out_dir=Path())
    text = train.add_parser(
        "text",
        help="text_classifier_learner (AWD_LSTM, ULMFiT) on a CSV of texts and labels "
        "(default: the shipped movie-review sentences)",
    )
    _common(text, name=DEMO_TEXT)
    text.add_argument("--text-col", default=defaults.text_col, help="the CSV column holding the texts")
    text.add_argument("--label-col", default=defaults.label_col, help="the CSV column holding the labels")
    text.add_argument("--epochs", type=int, default=defaults.epochs, help="the classifier's epochs")
    text.add_argument("--lr", type=float, default=defaults.lr, help="the classifier's (head's) learning rate")
    text.add_argument(
        "--lm-epochs",
        type=int,
        default=defaults.lm_epochs,
        help="epochs of the language model trained on the training texts first (ULMFiT); 0: from scratch",
    )
    text.add_argument("--lm-lr", type=float, default=defaults.lm_lr)
    text.add_argument(
        "--gradual",
        action=argparse.BooleanOptionalAction,
        default=defaults.gradual,
        help="ULMFiT's gradual unfreezing: an epoch on the head, one with the last layer, then --epochs",
    )
    text.add_argument("--bs", type=int, default=defaults.bs)
    text.add_argument("--seq-len", type=int, default=defaults.seq_len, help="tokens per BPTT chunk")
    text.add_argument("--emb-sz", type=int, default=defaults.emb_sz, help="AWD_LSTM embedding width")
    text.add_argument("--n-hid", type=int, default=defaults.n_hid, help="AWD_LSTM hidden width")
    text.add_argument("--n-layers", type=int, default=defaults.n_layers, help="AWD_LSTM layers")
    text.add_argument("--drop-mult", type=float, default=defaults.drop_mult, help="scales every dropout")
    text.add_argument("--wd", type=float, default=defaults.wd)
    text.add_argument(
        "--label-smoothing",
        type=float,
        default=defaults.label_smoothing,
        help="eps of LabelSmoothingCrossEntropyFlat (0 = plain CE)",
    )
    text.add_argument("--min-freq", type=int, default=defaults.min_freq, help="rarer tokens become xxunk")
    text.add_argument("--max-vocab", type=int, default=defaults.max_vocab)
    text.add_argument("--valid-pct", type=float, default=defaults.valid_pct)
    text.add_argument(
        "--test-pct",
        type=float,
        default=defaults.test_pct,
        help="share of the texts held out as the report's test set when there is no --test",
    )
    text.add_argument("--max-rows", type=int, default=None, help="a seeded sample of this many texts")
    text.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="torch threads while training and scoring (the count changes float sums, so the result); "
        "0: torch's default",
    )
    text.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=defaults.refit,
        help="train once more, from scratch, on the training and validation texts for the epochs the "
        "first fit chose (from scratch only)",
    )
    text.set_defaults(func=_train_text)


def _segmentation_parser(train: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from service.training.segmentation import SegmentationRecipe

    defaults = SegmentationRecipe(out_dir=Path())  # the shapes-segmentation demo's recipe
    seg = train.add_parser(
        "segmentation",
        help="unet_learner on images/ and masks/ folders (default: shapes generated from the seed)",
    )
    _common(seg, name=DEMO_SEGMENTATION)
    seg.add_argument("--codes", nargs="+", default=None, help="class names, index order of the masks")
    seg.add_argument("--n-images", type=int, default=defaults.n_images, help="generated shapes only")
    seg.add_argument("--size", type=int, default=defaults.size)
    seg.add_argument("--arch", default=defaults.arch, help="small (a 4-stage encoder), resnet18 or resnet34")
    seg.add_argument("--epochs", type=int, default=defaults.epochs)
    seg.add_argument("--lr", type=float, default=defaults.lr)
    seg.add_argument("--bs", type=int, default=defaults.bs)
    seg.add_argument(
        "--last-cross",
        action=argparse.BooleanOptionalAction,
        default=defaults.last_cross,
        help="unet_learner's full-size ResBlock over the input and the decoder's output (twice the cost)",
    )
    seg.add_argument("--valid-pct", type=float, default=defaults.valid_pct)
    seg.add_argument(
        "--test-pct", type=float, default=defaults.test_pct, help="images held out for the report"
    )
    seg.set_defaults(func=_train_segmentation)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastai-serve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the model store over HTTP (and gRPC, GRPC_PORT)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=None)
    serve.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="V2 inference over gRPC on this port (default: GRPC_PORT, 8001; 0 = off; not with --ray and "
        "RAY_FRONT=proxy)",
    )
    serve.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="serve on this Ray cluster (host:port, or auto for the one `ray start` made here)",
    )
    serve.add_argument("--replicas", type=int, default=None, help="with --ray: replicas per model")
    serve.set_defaults(func=_serve)

    train = commands.add_parser("train", help="train a model into the store").add_subparsers(
        dest="kind", required=True
    )
    tab = train.add_parser("tabular", help="tabular_learner on a CSV (default: the shipped UCI Adult data)")
    _common(tab, name=DEMO_TABULAR)
    tab.add_argument(
        "--target",
        nargs="+",
        default=None,
        help="the column(s) to predict (default: the demo's Salary); several make a regression",
    )
    tab.add_argument(
        "--task",
        choices=TABULAR_TASKS,
        default="auto",
        help="auto: regression for several targets or one numeric column with more than 20 distinct "
        "values, else classification; multi_label: one column of labels joined by ';' (a;b)",
    )
    tab.add_argument("--cat", nargs="*", default=None, help="categorical columns")
    tab.add_argument("--cont", nargs="*", default=None, help="continuous columns")
    tab.add_argument("--epochs", type=int, default=8)
    tab.add_argument("--lr", type=float, default=1e-2)
    tab.add_argument("--bs", type=int, default=1024)
    tab.add_argument("--wd", type=float, default=0.1)
    tab.add_argument("--ps", type=float, default=0.2, help="dropout of the hidden layers")
    tab.add_argument("--max-rows", type=int, default=None)
    tab.add_argument("--layers", type=int, nargs="+", default=[200, 100], help="sizes of the hidden layers")
    tab.add_argument(
        "--valid-pct", type=float, default=0.2, help="share of the training rows kept for validation"
    )
    tab.set_defaults(func=_train_tabular)

    vis = train.add_parser(
        "vision", help="vision_learner on an image folder (default: the shipped CIFAR-10 sample)"
    )
    _common(vis, name=DEMO_VISION)
    vis.add_argument(
        "--arch",
        default="resnet18",
        help="a torchvision classifier or a fastai xresnet: resnet18..152, xresnet18..152, convnext_tiny...",
    )
    vis.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False)
    vis.add_argument("--epochs", type=int, default=16)
    vis.add_argument("--lr", type=float, default=1e-2)
    vis.add_argument("--bs", type=int, default=128)
    vis.add_argument("--size", type=int, default=32)
    vis.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="random flips")
    vis.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=False, help="fastai's aug_transforms"
    )
    vis.add_argument("--ps", type=float, default=0.25, help="dropout of the head")
    vis.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        help="eps of LabelSmoothingCrossEntropyFlat (0 = plain CE)",
    )
    vis.add_argument("--valid-pct", type=float, default=0.05)
    vis.add_argument(
        "--small-input-stem",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="drop the stem's max-pool for tiny images (more accurate, ~1.5-2x slower per epoch)",
    )
    vis.add_argument("--max-per-class", type=int, default=None)
    vis.set_defaults(func=_train_vision)

    _text_parser(train)

    compare = commands.add_parser("compare", help="two or more models' test metrics side by side")
    compare.add_argument("models", nargs="+", help="model names in the store")
    compare.add_argument("--store", default=None)
    compare.set_defaults(func=_compare)

    feedback = commands.add_parser("feedback", help="the feedback on logged predictions").add_subparsers(
        dest="feedback_command", required=True
    )
    export = feedback.add_parser(
        "export",
        help="logged inputs with their feedback's true answers, as a CSV `fastai-serve train` takes",
    )
    export.add_argument("name", help="the model (its folder in the store)")
    export.add_argument("--log-dir", help="the payload log (default: FASTAI_SERVE_LOG_DIR)")
    export.add_argument("--store", help="the model store (default: FASTAI_SERVE_MODEL_STORE)")
    export.add_argument("--out", help="the CSV to write (default: NAME-feedback.csv)")
    export.set_defaults(func=_feedback_export)

    share_policy = commands.add_parser(
        "share-policy",
        help="render the public tunnel's ngrok traffic policy from NGROK_* settings (or refuse: exit 2)",
        description="Reads NGROK_OAUTH_PROVIDER (+ NGROK_OAUTH_ALLOW_EMAILS / NGROK_OAUTH_ALLOW_DOMAINS), "
        "NGROK_BASIC_AUTH=user:password or NGROK_ALLOW_ANONYMOUS=1 and writes the traffic policy ngrok's "
        "--traffic-policy-file takes. Without any of them it refuses (exit 2) and writes nothing.",
    )
    share_policy.add_argument(
        "--out-dir",
        default=None,
        help="write DIR/traffic-policy.yml (removing an earlier one first); default: print it to stdout",
    )
    share_policy.set_defaults(func=_share_policy)

    col = train.add_parser(
        "collab", help="collab_learner on a ratings CSV (default: the shipped MovieLens ml-latest-small)"
    )
    _common(col, name=DEMO_COLLAB)
    col.add_argument("--items", default=None, help="CSV of item titles (its --item column first or named)")
    col.add_argument("--user", default="userId", help="the user column")
    col.add_argument("--item", default="movieId", help="the item column")
    col.add_argument("--rating", default="rating", help="the rating column")
    col.add_argument("--use-nn", action="store_true", help="EmbeddingNN instead of the dot product")
    col.add_argument("--factors", type=int, default=50, help="embedding width of the dot product")
    col.add_argument("--layers", type=int, nargs="+", default=[100], help="EmbeddingNN's hidden layers")
    col.add_argument("--y-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    col.add_argument("--no-y-range", action="store_true", help="no sigmoid range on the output")
    col.add_argument("--epochs", type=int, default=5)
    col.add_argument("--lr", type=float, default=5e-3)
    col.add_argument("--wd", type=float, default=0.1)
    col.add_argument("--bs", type=int, default=64)
    col.add_argument("--valid-pct", type=float, default=0.1)
    col.add_argument("--test-pct", type=float, default=0.1, help="ratings held out for the report")
    col.add_argument("--max-rows", type=int, default=None)
    col.set_defaults(func=_train_collab)

    _segmentation_parser(train)

    demo = train.add_parser("demo", help="build the demo models that are missing")
    demo.add_argument("--store", default=None)
    demo.add_argument("--force", action="store_true")
    demo.add_argument(
        "--only",
        choices=DEMO_GROUPS,
        default="all",
        help="existing: the tabular and vision demos; new: text, collab, segmentation (make run trains "
        "these in the background); default all",
    )
    demo.add_argument("--models", nargs="+", default=None, help="only these demo models (by name)")
    demo.set_defaults(func=_train_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from service.errors import CliInputError

    os.environ.setdefault("MPLBACKEND", "Agg")
    warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=FutureWarning)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliInputError as exc:
        # Bad input is the user's to fix: one line that says what, like argparse's own errors (exit 2).
        print(f"fastai-serve: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
