"""`make bench`: our predictors vs fastai's own paths vs the compute floor, in-process and over HTTP.

Everything runs in one go on this machine with the demo models, so the ratios compare like with like,
and with a tabular regression and a vision multi-label model of the demo classifiers' architectures (the
bench trains them into .cache/bench/store the first time, about a minute), each timed as a share of its
classifier's speed; the text classifier, recommender and segmentation model of issue #22 (the demo ones, or
stand-ins the bench builds while they are missing) against the naive server's cookbook way, and `recommend`'s
latency over 10,000 items; `--peer` (`make bench PEER=1`) or `--peer-only` (`make bench-peer`) adds BentoML serving the same files.
Results are printed as a table and written to .cache/bench/results.json (ignored by git); `make bench-record`
copies a run to the tracked bench/results.json on purpose. Run it from the repository root: `python -m bench`.
"""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports fastai, which imports matplotlib: no display on a bench machine.
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache"
DEFAULT_STORE = ROOT / "model_store"
