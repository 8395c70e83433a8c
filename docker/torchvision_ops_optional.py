"""Let torchvision import when its C++ ops cannot load beside the installed torch.

Only for builds that pair a CPU torch file with PyPI's (CUDA-linked) torchvision, as on hosts that cannot
reach the PyTorch wheel index (`TORCHVISION_OPS_OPTIONAL=1`). torchvision registers fake kernels for
`nms`/`qnms` without checking that its ops loaded, so `import torchvision` fails with
"operator torchvision::nms does not exist". This guards those two registrations the way torchvision
already guards the others (`register_meta` checks `extension._has_ops()`). Detection models that call
nms would then fail at prediction; image classification never calls it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

UNGUARDED = '@torch.library.register_fake("torchvision::{op}")'
GUARDED = '@register_meta("{op}")'


def main() -> int:
    spec = importlib.util.find_spec("torchvision")  # finds the package without importing it
    if spec is None or spec.origin is None:
        print("torchvision is not installed", file=sys.stderr)
        return 1
    path = Path(spec.origin).parent / "_meta_registrations.py"
    text = path.read_text()
    for op in ("nms", "qnms"):
        if UNGUARDED.format(op=op) not in text:
            print(f"{path}: no unguarded {op} registration; nothing to do for it")
            continue
        text = text.replace(UNGUARDED.format(op=op), GUARDED.format(op=op))
        print(f"{path}: {op} fake kernel now registered only when torchvision's ops load")
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
