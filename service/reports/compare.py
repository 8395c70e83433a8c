"""`fastai-serve compare A B`: models' test metrics and confusion matrices side by side (the book's
"augmented vs not augmented" comparison), read from their reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.reports.store import read_report


def _macro(metric: str) -> Any:
    return lambda r, t: (t.get(metric) or {}).get("macro")


# Rows a test evaluation lacks (another task's) show "-".
ROWS = [
    ("task", lambda r, t: r.get("task")),
    ("test items", lambda r, t: t["n"]),
    ("test accuracy", lambda r, t: t.get("accuracy")),
    ("accuracy_multi", lambda r, t: t.get("accuracy_multi")),
    ("precision (macro)", _macro("precision")),
    ("recall (macro)", _macro("recall")),
    ("F1 (macro)", _macro("f1")),
    ("F1 (micro)", lambda r, t: (t.get("f1") or {}).get("micro")),
    ("augmented", lambda r, t: r.get("augmented")),
    ("seed", lambda r, t: r.get("seed")),
    ("best epoch", lambda r, t: r.get("best_epoch")),
    ("stopped early", lambda r, t: r.get("stopped_early")),
    ("training seconds", lambda r, t: r.get("train_seconds")),
]


def _target_rows(tests: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """A regression's RMSE and R² per target, for every target any of the models predicts."""
    targets = dict.fromkeys(t for test in tests for t in (test.get("targets") or {}))
    return [
        (
            f"{metric} {target}",
            lambda r, t, m=metric, name=target: (t.get("targets") or {}).get(name, {}).get(m),
        )
        for target in targets
        for metric in ("rmse", "r2")
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def compare_reports(store: Path, names: list[str]) -> str:
    reports = {name: read_report(store / name) for name in names}
    width = max(12, *(len(n) for n in names)) + 2
    lines = ["".ljust(20) + "".join(n.rjust(width) for n in names)]
    tests = [t for r in reports.values() if r and (t := r.get("test"))]
    for label, get in [*ROWS, *_target_rows(tests)]:
        cells = []
        for name in names:
            report = reports[name]
            test = (report or {}).get("test")
            cells.append("no report" if report is None else "-" if test is None else _fmt(get(report, test)))
        lines.append(label.ljust(20) + "".join(c.rjust(width) for c in cells))
    for name in names:
        test = (reports[name] or {}).get("test")
        if not test or "confusion_matrix" not in test:  # a classifier's only
            continue
        labels, matrix = test["confusion_matrix"]["labels"], test["confusion_matrix"]["matrix"]
        cell = max(5, *(len(label) for label in labels)) + 1
        lines += ["", f"{name}: confusion matrix (rows actual, columns predicted)"]
        lines.append("".ljust(cell) + "".join(label[: cell - 1].rjust(cell) for label in labels))
        lines += [
            label[: cell - 1].ljust(cell) + "".join(str(v).rjust(cell) for v in row)
            for label, row in zip(labels, matrix, strict=True)
        ]
        if test["most_confused"]:
            pairs = ", ".join(f"{a}->{p} ({c})" for a, p, c in test["most_confused"][:5])
            lines.append(f"most confused: {pairs}")
    return "\n".join(lines)
