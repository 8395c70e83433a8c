"""Loading exports that fastai 2.8 refuses: learners pickled by fastai 2.0-2.7, in notebooks, on Windows.

The unpickler below rewrites what moved between those versions and 2.8, swaps notebook leftovers for inert
stand-ins, and reads legacy pandas objects through pandas' own legacy-pickle support. Each rewrite it
applies is recorded, so the model detail can say how the learner was loaded.
"""

from __future__ import annotations

import pathlib
import pickle
import types
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pandas.compat.pickle_compat import Unpickler as PandasLegacyUnpickler

LOADED_WITH = "fastai-serve compat loader"

NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
# Modules that moved; each maps to where its classes live in fastai 2.8's stack.
MODULE_MOVES: dict[str, str] = {
    "fastcore.transform": "fasttransform.transform",
    "fastcore.dispatch": "fasttransform.transform",
}
# Single names that moved or no longer exist on this platform.
NAME_MOVES: dict[tuple[str, str], tuple[str, str]] = {
    ("pathlib", "WindowsPath"): ("pathlib", "PosixPath"),
    ("pathlib", "PureWindowsPath"): ("pathlib", "PurePosixPath"),
}
# Objects a notebook leaves inside a learner (progress bar display handles); never needed to predict.
NOTEBOOK_MODULES = ("IPython", "ipykernel", "ipywidgets")


class NotebookLeftover:
    """Inert stand-in for an object pickled from a notebook (e.g. IPython's DisplayHandle)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None


@dataclass
class CompatReport:
    """What the compat loader had to do, and which fastai probably wrote the file."""

    notes: list[str] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def made_by(self) -> str:
        return guess_fastai_version(self.modules)


def guess_fastai_version(modules: set[str]) -> str:
    """Which fastai wrote a pickle, judged by the modules it references."""
    if any(m.startswith("fastai.basic_train") or m.startswith("fastai.basic_data") for m in modules):
        return "fastai 1.x"
    if any(m.startswith("fastcore.transform") or m.startswith("fastcore.dispatch") for m in modules):
        return "fastai 2.0-2.7"
    if any(m.startswith("fasttransform") for m in modules):
        return "fastai 2.8 or newer"
    return "an unknown fastai version"


def referenced_modules(path: Path) -> tuple[set[str], bool]:
    """Modules a torch zip pickle refers to, and whether its tensors were saved on CUDA (no unpickling)."""
    import pickletools

    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            payload = archive.read(name)
    except (zipfile.BadZipFile, StopIteration, OSError):
        return set(), False
    modules: set[str] = set()
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(payload):
            if op.name == "GLOBAL" and isinstance(arg, str):
                modules.add(arg.split(" ")[0])
            elif op.name in {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE"} and isinstance(arg, str):
                strings.append(arg)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                modules.add(strings[-2])
    except Exception:  # noqa: BLE001 - a damaged stream just gives fewer hints
        pass
    return modules, any(s.startswith("cuda") for s in strings)


def _unpickler_class(report: CompatReport) -> type:
    class CompatUnpickler(PandasLegacyUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            report.modules.add(module)
            if module.split(".")[0] in NOTEBOOK_MODULES:
                report.note(f"replaced notebook object {module}.{name} with an inert stand-in")
                return NotebookLeftover
            if (module, name) in NAME_MOVES:
                new_module, new_name = NAME_MOVES[(module, name)]
                if (new_module, new_name) != (module, name):
                    report.note(f"mapped {module}.{name} to {new_module}.{new_name}")
                module, name = new_module, new_name
            if module in MODULE_MOVES:
                report.note(f"mapped {module} to {MODULE_MOVES[module]}")
                module = MODULE_MOVES[module]
            elif module.startswith("numpy.core") and NUMPY_2:
                # numpy 2 renamed numpy.core to numpy._core; the old name is a deprecated alias.
                module = "numpy._core" + module[len("numpy.core") :]
            return super().find_class(module, name)

    return CompatUnpickler


def compat_pickle_module(report: CompatReport) -> types.ModuleType:
    """A stand-in for the `pickle` module that `torch.load(pickle_module=...)` accepts."""
    module = types.ModuleType("fastai_serve_compat_pickle")
    unpickler = _unpickler_class(report)
    module.Unpickler = unpickler  # type: ignore[attr-defined]
    module.load = lambda fh, **kw: unpickler(fh, **kw).load()  # type: ignore[attr-defined]
    module.loads = pickle.loads  # type: ignore[attr-defined]
    module.Pickler = pickle.Pickler  # type: ignore[attr-defined]
    module.HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL  # type: ignore[attr-defined]
    return module


def report_for(path: Path) -> CompatReport:
    """A report primed with what the file itself says (its modules, CUDA tensors), read once."""
    report = CompatReport()
    report.modules, on_cuda = referenced_modules(path)
    if on_cuda:
        report.note("tensors were saved on CUDA; loaded onto the CPU first, then moved to the serving device")
    return report


def load_with_compat(path: Path, report: CompatReport) -> Any:
    """Unpickle an old export onto the CPU, recording every rewrite in `report`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=compat_pickle_module(report)
        )
    if isinstance(getattr(learn, "path", None), pathlib.PurePath):
        learn.path = Path(str(learn.path).replace("\\", "/"))
    return learn
