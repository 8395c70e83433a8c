"""The printed table (a block per part, a row per case) and results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.cases import (
    CASES,
    RECOMMENDS,
    Aim,
    Case,
    CollabCase,
    RecommendCase,
    TabularCase,
    TextCase,
    ratio_key,
)
from bench.inprocess import IMAGES, PAIRS, TABULAR_ROWS, TEXTS


def write_results(results: dict[str, Any], path: Path) -> None:
    """results.json as every run writes it (indented by one), and where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def _ratio(aim: Aim | None, value: float, *, share: bool) -> str:
    """A ratio with its aim's name and target, when the case has one: "P2    78%  (target >= 75%)"."""
    shown = f"{value:6.0%}" if share else f"{value:6.1f}x"
    if aim is None:
        return f"   {shown}"
    target = f"{aim.target:.0%}" if share else f"{aim.target:g}x"
    return f"{aim.name} {shown}  (target >= {target})"


def _and(names: list[str]) -> str:
    """Names joined as prose: P2 and P3; P2, P3 and tabular regression."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _runtime(case: Case, runtime: dict[str, Any]) -> str:
    """A case's runtime, and when it is off the fast path (fastai's own pipeline per request), that too."""
    slow = "" if runtime.get("fast_path", True) else " (no fast path: fastai's pipeline)"
    return f"{case.label} {runtime['runtime']}{slow}"


def in_process_lines(ip: dict[str, Any], cases: tuple[Case, ...] = CASES) -> list[str]:
    """Each case's rows, then the runtimes and torch eager's floors, then the paired times."""
    lines = [
        "in-process                      ours            fastai (B / learn.predict)   floor (L)        ratio"
    ]
    eager, paired_names, paired_parts = [], [], []
    for case in cases:
        if isinstance(case, TabularCase):
            t1, t2 = ip[f"{case.key}_one_row"], ip[f"{case.key}_10k_rows"]
            one, batch = case.one_row_aim, case.batch_aim
            lines += [
                f"{case.label + ' 1 row':<32}{t1['ours_ms']:8.3f} ms     {t1['learn_predict_ms']:8.2f} ms (predict)"
                f"                       {_ratio(one, t1[ratio_key(one, 'speedup')], share=False)}",
                f"{case.label + ' 10k rows':<32}{t2['ours_rows_per_s']:8.0f} rows/s {t2['fastai_get_preds_rows_per_s']:8.0f} rows/s (B)"
                f"     {t2['floor_rows_per_s']:8.0f} rows/s  {_ratio(batch, t2[ratio_key(batch, 'ours_vs_floor')], share=True)}",
                f"  from the CSV's bytes          {t2.get('ours_from_bytes_rows_per_s', 0):8.0f} rows/s (pyarrow's reader included)",
                f"  same rows as JSON objects     {t2['ours_json_rows_per_s']:8.0f} rows/s (validated per row, Prediction objects)",
            ]
            eager.append(f"{t2['torch_eager_floor_rows_per_s']:.0f} rows/s")
            pair, what, digits = t2.get(ratio_key(batch, "paired_ms")), f"{TABULAR_ROWS // 1000}k rows", 2
        elif isinstance(case, TextCase | CollabCase):
            lines += _kind_lines(case, ip)
            continue
        else:
            v, batch = ip[f"{case.key}_{IMAGES}_images"], case.batch_aim
            lines.append(
                f"{case.label + f' {IMAGES} images':<32}{v['ours_images_per_s']:8.0f} img/s  {v['fastai_get_preds_images_per_s']:8.0f} img/s (B)"
                f"      {v['floor_images_per_s']:8.0f} img/s   {_ratio(batch, v[ratio_key(batch, 'ours_vs_floor')], share=True)}"
            )
            eager.append(f"{v['torch_eager_floor_images_per_s']:.0f} img/s")
            pair, what, digits = v.get(ratio_key(batch, "paired_ms")), f"{IMAGES} images", 1
        if pair is not None:
            # The aims' cases by their names (P2, P3), any other by its label.
            paired_names.append(batch.name if batch else case.label)
            what = what if batch else f"{case.label} {what}"
            paired_parts.append(f"{what} {pair['ours']:.{digits}f} ms vs floor {pair['floor']:.{digits}f} ms")
    runtimes = ", ".join(_runtime(case, ip[f"runtime_{case.model}"]) for case in cases)
    lines.append(f"  runtime: {runtimes}; torch-eager L: {', '.join(eager)}")
    if paired_parts:
        lines.append(f"  {_and(paired_names)} from alternating calls: {'; '.join(paired_parts)}")
    return lines


def _kind_lines(case: TextCase | CollabCase, ip: dict[str, Any]) -> list[str]:
    """A text or collab case: one item (ours vs learn.predict, or get_preds on one row for collab), then a
    batch (ours vs test_dl + get_preds); no floor."""
    if isinstance(case, TextCase):
        one, many = ip[f"{case.key}_one_text"], ip[f"{case.key}_{TEXTS}_texts"]
        naive, n, unit = one["learn_predict_ms"], f"{TEXTS} texts", "texts"
        what = "(predict)"
    else:
        one, many = ip[f"{case.key}_one_pair"], ip[f"{case.key}_{PAIRS // 1000}k_pairs"]
        naive, n, unit = one["get_preds_one_row_ms"], f"{PAIRS // 1000}k pairs", "pairs"
        what = "(get_preds)"
    return [
        f"{case.label + ' 1 item':<32}{one['ours_ms']:8.3f} ms     {naive:8.2f} ms {what:<27}   {one['speedup']:6.1f}x",
        f"{case.label + ' ' + n:<32}{many[f'ours_{unit}_per_s']:8.0f} {unit}/s {many[f'fastai_get_preds_{unit}_per_s']:8.0f} {unit}/s (B)"
        f"{'':>23}{many['ours_vs_get_preds']:6.1f}x of B",
    ]


def recommend_lines(
    ip: dict[str, Any], h: dict[str, Any] | None, cases: tuple[RecommendCase, ...] = RECOMMENDS
) -> list[str]:
    """`recommend` over every item, per recommender: in-process p50/p99, then over HTTP at 1 and 32
    clients."""
    lines: list[str] = []
    for case in cases:
        lines += _recommend_lines(case, ip, h)
    return lines


def _recommend_lines(case: RecommendCase, ip: dict[str, Any], h: dict[str, Any] | None) -> list[str]:
    row = ip.get(case.key)
    if row is None:
        return []
    lines = [
        f"recommend, {case.variant} ({row['items']:,} items scored per call, best {row['count']}): in-process"
        f" p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms over {row['calls']} calls"
        f" (issue: p50 <= {row['target_p50_ms']:g} ms)"
    ]
    for c in (1, 32):
        r = (h or {}).get(f"ours_{case.key}_c{c}")
        if r is not None:
            lines.append(
                f"  HTTP GET recommend, clients {c:>2}: {r['requests_per_s']:8.1f} req/s p50 {r['p50_ms']:6.1f} ms"
                f" p99 {r['p99_ms']:6.1f} ms err {r['errors']}"
            )
    return lines


def kind_ratio_lines(ratios: dict[str, Any]) -> list[str]:
    """Per case, ours vs the naive server over HTTP (kind_ratios in results.json)."""
    if not ratios:
        return []
    w = max(len(key) for key in ratios)
    lines = ["Ours vs the naive server per model (32 clients: requests/s; 1 client: naive p50 / ours):"]

    def shown(value: float | None) -> str:
        return "   n/a " if value is None else f"{value:6.1f}x"

    for key, r in ratios.items():
        lines.append(
            f"  {key.replace('_', ' '):<{w}}  @32 {shown(r['c32_requests_vs_naive'])}   @1 p50 {shown(r['c1_naive_p50_over_ours'])}"
        )
    return lines


def _beside(
    h: dict[str, Any], prefix: str, names: tuple[str, str], *, share: bool, cases: tuple[Case, ...]
) -> list[str]:
    """One line per case and client count: our plain server's row, then `prefix`'s beside it."""
    lines, w = [], _width(cases)
    for case in cases:
        for c in (1, 32):
            o, other = h[f"ours_{case.key}_c{c}"], h.get(f"{prefix}_{case.key}_c{c}")
            if other is None:
                continue
            # A step that answered nothing (a 1 s --quick step on a busy machine) has no share.
            of = f"{other['requests_per_s'] / o['requests_per_s']:.0%}" if o["requests_per_s"] else "n/a"
            ratio = f" ({of} of {names[0]})" if share else ""
            lines.append(
                f"{case.label:<{w}} clients {c:>3}   {names[0]} {o['requests_per_s']:8.1f} req/s p50 {o['p50_ms']:6.1f} ms |"
                f" {names[1]} {other['requests_per_s']:8.1f} req/s p50 {other['p50_ms']:6.1f} ms"
                f" p99 {other['p99_ms']:6.1f} ms err {other['errors']}{ratio}"
            )
    return lines


def _width(cases: tuple[Case, ...]) -> int:
    """The HTTP rows' label column: 8 wide, or wider for a longer case label."""
    return max([8, *(len(case.label) + 1 for case in cases)])


def http_lines(h: dict[str, Any], cases: tuple[Case, ...] = CASES) -> list[str]:
    """Ours beside the naive server per case, then /v2 and two workers beside our plain server."""
    w = _width(cases)
    lines = [
        f"{'HTTP (loopback)':<{w + 12}}clients   ours req/s  p50 ms  p99 ms  err |  naive req/s  p50 ms  p99 ms  err"
    ]
    for case in cases:
        for c in (1, 8, 32):
            o, n = h[f"ours_{case.key}_c{c}"], h[f"naive_{case.key}_c{c}"]
            lines.append(
                f"{case.label:<{w}} 1 item     {c:>7}   {o['requests_per_s']:10.1f} {o['p50_ms']:7.1f} {o['p99_ms']:7.1f} {o['errors']:4d} |"
                f" {n['requests_per_s']:11.1f} {n['p50_ms']:7.1f} {n['p99_ms']:7.1f} {n['errors']:4d}"
            )
    lines += ["", "Open Inference Protocol (/v2, binary tensors) beside /api/v1, same one-item requests:"]
    lines += _beside(h, "ours_v2", ("v1", "v2"), share=True, cases=cases)
    lines += ["", "Open Inference Protocol over gRPC (tritonclient.grpc, raw tensors) beside /api/v1:"]
    lines += _beside(h, "ours_grpc", ("v1", "gRPC"), share=True, cases=cases)
    lines += ["", "Two worker processes (fastai-serve serve --workers 2) beside one, same one-item requests:"]
    lines += _beside(h, "workers2", ("1 worker", "2 workers"), share=False, cases=cases)
    return lines


def ratio_lines(r: dict[str, Any], mem: dict[str, Any]) -> list[str]:
    """The issue's HTTP figures P4-P7, on the demo models."""
    return [
        f"P4 vision HTTP @32: {r['P4_vs_P3']:.0%} of in-process images/s (target >= 50%), {r['P4_vs_naive']:.1f}x naive (target >= 15x)",
        f"   with 2 workers: {r.get('P4_workers2_vs_P3', 0):.0%} of in-process, {r.get('P4_workers2_vs_naive', 0):.1f}x naive;"
        f" P7 with 2 workers: {r.get('P7_workers2_vs_naive_p50', 0):.1f}x",
        f"P5 tabular HTTP @32: {r['P5_vs_naive']:.1f}x naive (target >= 20x), p99/p50 = {r['P5_p99_over_p50']:.2f} (target <= 3)",
        f"P6 RSS {mem['rss_after_warmup_mb']:.0f} MB after warm-up -> {mem['rss_after_requests_mb']:.0f} MB after"
        f" {mem['requests']} requests: {mem['P6_growth_pct']:+.1f}% (target <= 5%); peak {mem['peak_rss_mb']:.0f} MB",
        f"P7 one client, one image: p50 {r['P7_vs_naive_p50']:.1f}x faster than the naive server (target >= 4x)",
    ]


def large_csv_lines(big: dict[str, Any]) -> list[str]:
    """The 100k-row CSV's time and peak RSS growth per endpoint."""
    lines = [f"One {big['rows']:,}-row CSV ({big['upload_mb']:.1f} MB) in one request: time, peak RSS growth"]
    for name in ("first_large_file", "evaluate", "predict_csv_json", "predict_csv_text"):
        step = big[name]
        lines.append(
            f"  {name:<18} {step['seconds']:6.2f} s {step['rows_per_s']:9.0f} rows/s"
            f"  +{step['peak_growth_mb']:5.1f} MB = {step['peak_growth_over_upload']:.1f}x the upload (target <= 3x)"
        )
    return lines


def task_lines(shares: dict[str, Any]) -> list[str]:
    """Each other task's speed as a share of its classifier's, row by row (the in-process rows, then our
    server at 1 and 32 clients), with the lowest against the target."""
    if not shares:
        return []
    names = {"one_row": "1 row", "10k_rows": "10k rows", "ours_c1": "HTTP c1", "ours_c32": "HTTP c32"}
    target = min(row["target"] for row in shares.values())
    lines = [
        f"Other tasks beside the classifier of the same architecture: speed as a share of the classifier's (target >= {target:.0%})"
    ]
    w = max(len(key) for key in shares)
    for key, row in shares.items():
        parts = {k: v for k, v in row.items() if k != "target"}
        low = min(parts.values())
        shown = "  ".join(f"{names.get(k, k.replace('_', ' '))} {v:4.0%}" for k, v in parts.items())
        verdict = "ok" if low >= row["target"] else f"BELOW {row['target']:.0%}"
        lines.append(
            f"  {key.replace('_vs_', ' vs ').replace('_', ' '):<{w}}  {shown}  (lowest {low:.0%}: {verdict})"
        )
    return lines


def peer_table(p: dict[str, Any]) -> list[str]:
    """Ours beside BentoML, with the parity check it passed first."""
    par = p["parity"]
    lines = [
        f"Peer: BentoML {p['bentoml_version']}, adaptive batching around fastai's test_dl + get_preds, same model files;"
        f" predictions equal on {par['items']} items (labels, max |dp| {par['max_abs_diff']:.1e})",
        "                 clients   ours req/s  p50 ms  p99 ms  err | bentoml req/s  p50 ms  p99 ms  err | ours vs bentoml",
    ]
    for key, row in p["rows"].items():
        kind, clients = key.split("_c")
        o, b = row["ours"], row["bentoml"]
        what = "answered req/s" if int(clients) > 1 else "p50 latency"
        lines.append(
            f"{kind:<8} 1 item  {clients:>7}   {o['requests_per_s']:10.1f} {o['p50_ms']:7.1f} {o['p99_ms']:7.1f} {o['errors']:4d} |"
            f" {b['requests_per_s']:13.1f} {b['p50_ms']:7.1f} {b['p99_ms']:7.1f} {b['errors']:4d} |"
            f" {row['ratio']:5.2f}x {what} (aim >= {row['aim']:g}x)"
        )
    return lines


def table(results: dict[str, Any], cases: tuple[Case, ...] = CASES) -> str:
    """The whole run as printed: in-process, HTTP, the issue's figures, the other tasks beside their
    classifiers, the large CSV, the peer."""
    lines = [f"fastai-serve bench — {results['machine']}; load generator: {results['load_generator']}", ""]
    lines += in_process_lines(results["in_process"], cases)
    lines += ["", *http_lines(results["http"], cases)]
    lines += ["", *ratio_lines(results["ratios"], results["http"]["ours_memory"])]
    if results.get("task_ratios"):
        lines += ["", *task_lines(results["task_ratios"])]
    if results.get("kind_ratios"):
        lines += ["", *kind_ratio_lines(results["kind_ratios"])]
    recommend = recommend_lines(results["in_process"], results["http"])
    if recommend:
        lines += ["", *recommend]
    big = results["http"].get("ours_large_csv")
    if big is not None:
        lines += ["", *large_csv_lines(big)]
    if "peer" in results:
        lines += ["", *peer_table(results["peer"])]
    if results.get("models"):
        # A stand-in the bench built is not the demo model: say which files were timed.
        lines += ["", "Models timed:", *(f"  {name}: {what}" for name, what in results["models"].items())]
    return "\n".join(lines)


def access_lines(access: dict[str, Any]) -> list[str]:
    """The API-key and rate-limit step: each server's median of its rounds, and the cost (target <= 3%)."""
    lines = ["API keys + rate limit on the one-row request (alternating rounds, medians):"]
    for clients in (1, 32):
        plain, guarded = access[f"open_c{clients}"], access[f"guarded_c{clients}"]
        lines.append(
            f"  clients {clients:>2}  open {plain['requests_per_s']:8.1f} req/s p50 {plain['p50_ms']:6.2f} ms | "
            f"keys+limit {guarded['requests_per_s']:8.1f} req/s p50 {guarded['p50_ms']:6.2f} ms | "
            f"overhead {access[f'overhead_c{clients}']:+.1%} (target <= 3%) err {guarded['errors']}"
        )
    if "check_us" in access:
        lines.append(
            f"  the check itself, in-process: {access['check_us']:.1f} us per request = "
            f"{access['check_share_c1']:.1%} of a one-client request's p50 (target <= 3%)"
        )
    return lines
