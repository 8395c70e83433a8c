"""Runtimes under the predictors: what turns encoded inputs into the model's activated outputs.

`TorchModel` runs the learner's model on tensors the predictor already encoded (the fast paths);
`OnnxModel` runs the same model exported to ONNX in ONNX Runtime; `FastaiPipeline` runs fastai's own
`test_dl` + `get_preds` for learners whose transforms we do not reproduce. The learner's preprocessing
always stays above this layer, in the predictor: only the forward (model + loss activation) moves.

`select_runtime` picks one at load (`FASTAI_SERVE_RUNTIME=auto|onnx|torch`): it exports the model, builds
an ONNX Runtime session and keeps it only when it matches torch on the predictor's own self-check input and
a random batch; otherwise torch serves and the reason is recorded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from service.errors import (
    MSG_PRECISION_CPU,
    MSG_PRECISION_FP16,
    MSG_PRECISION_FP32,
    MSG_RUNTIME_EXPORT_FAILED,
    MSG_RUNTIME_FALLBACK,
    MSG_RUNTIME_MISMATCH,
    MSG_RUNTIME_NO_CUDA_PROVIDER,
    MSG_RUNTIME_NO_FAST_PATH,
    MSG_RUNTIME_ONNX,
    MSG_RUNTIME_REQUIRED,
    MSG_RUNTIME_TORCH_SETTING,
    LoadError,
    RuntimeUnavailable,
)

logger = logging.getLogger(__name__)

# How far ONNX Runtime's outputs may be from torch's (float noise is ~1e-6), relative past 1.
PARITY_TOLERANCE = 1e-4
# Past a few thousand rows a bigger matrix only costs cache misses (and memory): run in slices.
MAX_BATCH = 4096


RuntimeName = Literal["onnx", "torch"]


class RuntimeSetting(StrEnum):
    """`FASTAI_SERVE_RUNTIME`: `auto` = ONNX Runtime when it passes the parity check, else torch."""

    AUTO = "auto"
    ONNX = "onnx"
    TORCH = "torch"


class ModelRuntime(Protocol):
    """The forward under a fast path: encoded tensors in, (n, width) float32 activated outputs out
    (probabilities for classifiers, values for a regression, scaled coordinates for points; a segmentation
    model's are (n, classes, height, width), its loss's softmax over axis 1). Only axis 0 is the batch."""

    name: str

    def outputs(self, *inputs: Any) -> np.ndarray: ...


class Accelerable(Protocol):
    """What `select_runtime` needs of a predictor: its fast path's runtime and inputs to check one with."""

    runtime: ModelRuntime

    @property
    def classifies(self) -> bool:
        """Whether its outputs are one label's probabilities (then labels must agree too)."""
        ...

    @property
    def fast_path(self) -> bool: ...

    def parity_inputs(self) -> list[tuple[Any, ...]]:
        """Encoded inputs a new runtime must match torch on: the self-check input, then a random batch."""
        ...


class Precision(StrEnum):
    """`FASTAI_SERVE_PRECISION`: `fp16` runs a CUDA model's torch forward under `torch.autocast` (float16),
    kept only when it matches the fp32 forward within `FP16_TOLERANCE` on the parity inputs; on CPU, and for
    a model without a fast path, the forward stays fp32 (the model's `runtime_note` says so)."""

    FP32 = "fp32"
    FP16 = "fp16"


# float16 keeps 11 significant bits: probabilities within 1e-2 of fp32's, labels equal where fp32's two best
# classes are clear of each other (the same gate as ONNX Runtime's, wider).
FP16_TOLERANCE = 1e-2


@dataclass(frozen=True)
class RuntimeOptions:
    setting: RuntimeSetting = RuntimeSetting.TORCH
    precision: Precision = Precision.FP32
    cache_dir: Path | None = None  # exports by sha256; never the model store, which may be read-only
    # ONNX Runtime's intra-op threads spin between runs (its default): the lowest latency for the one
    # process that owns the cores, but CPU stolen from the others where several workers share them.
    spin: bool = True


@dataclass(frozen=True)
class RuntimeChoice:
    """What a model runs on, as the model detail and the metrics report it, and why."""

    name: RuntimeName
    note: str
    precision: Precision = Precision.FP32


def _plain(x: Any) -> Any:
    import torch

    # Plain tensors: fastai's TensorBase subclasses add a __torch_function__ hop to every layer.
    return x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else x


class _Forward:
    """The model followed by the loss's activation: what both runtimes compute."""

    def __init__(self, learn: Any) -> None:
        import torch

        self.model = learn.model
        activation = getattr(learn.loss_func, "activation", None)
        self.activation: Callable[[Any], Any] = (
            activation if callable(activation) else (lambda out: torch.softmax(out, dim=-1))
        )

    def __call__(self, *inputs: Any) -> Any:
        return self.activation(self.model(*inputs)).float()


class TorchModel:
    """The model's forward and the loss's activation in torch eager, on tensors already encoded."""

    name = "torch"

    def __init__(self, learn: Any, *, input_names: tuple[str, ...], max_batch: int = MAX_BATCH) -> None:
        import torch

        self._torch = torch
        self.max_batch = max_batch
        self.input_names = input_names
        self.forward = _Forward(learn)
        self.device = next(iter(learn.model.parameters())).device
        self.half: Any = None  # torch.float16: the forward under autocast (`select_runtime`, CUDA only)
        self._lock = threading.Lock()

    def _precision(self) -> Any:
        if self.half is None:
            return contextlib.nullcontext()
        return self._torch.autocast(device_type=self.device.type, dtype=self.half)

    def outputs(self, *inputs: Any) -> np.ndarray:
        torch = self._torch
        n = len(inputs[0])
        chunks = []
        with self._lock, torch.inference_mode(), self._precision():
            for start in range(0, n, self.max_batch):
                part = [
                    _plain(x[start : start + self.max_batch]).to(self.device, non_blocking=True)
                    for x in inputs
                ]
                chunks.append(self.forward(*part).cpu())
        return np.asarray(torch.cat(chunks).numpy() if len(chunks) > 1 else chunks[0].numpy())

    def export_onnx(self, example: tuple[Any, ...]) -> bytes:
        """The model and activation as ONNX (TorchScript exporter), batch axis dynamic."""
        torch = self._torch

        module: Any = torch.nn.Module

        class Wrapped(module):
            def __init__(self, forward: _Forward) -> None:
                super().__init__()
                self.model = forward.model
                self.activation = forward.activation

            def forward(self, *inputs: Any) -> Any:
                return self.activation(self.model(*inputs)).float()

        names = list(self.input_names)
        buffer = io.BytesIO()
        # In eval mode like the model: the exporter puts a module back in the mode it found it in, and a
        # fresh wrapper is in training mode, which would leave the serving model training (BatchNorm!).
        wrapped = Wrapped(self.forward).train(self.forward.model.training)
        args = tuple(_plain(x).to(self.device) for x in example)
        with self._lock, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                args,
                buffer,
                input_names=names,
                output_names=["outputs"],
                dynamic_axes={name: {0: "n"} for name in [*names, "outputs"]},
                dynamo=False,
            )
        return buffer.getvalue()


class OnnxModel:
    """The exported model in an ONNX Runtime session (CPU, or CUDA when the device is CUDA)."""

    name = "onnx"

    def __init__(
        self,
        model: bytes,
        *,
        input_names: tuple[str, ...],
        device: Any,
        threads: int,
        max_batch: int = MAX_BATCH,
        spin: bool = True,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.type == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(model, sess_options=options, providers=providers)
        self.threads = threads
        self.max_batch = max_batch
        # The exporter drops inputs the graph never reads (a tabular model without continuous columns).
        used = {i.name for i in self.session.get_inputs()}
        self._feeds = [(i, name) for i, name in enumerate(input_names) if name in used]

    def outputs(self, *inputs: Any) -> np.ndarray:
        arrays = [_numpy(x) for x in inputs]
        n = len(arrays[0])
        chunks = []
        for start in range(0, n, self.max_batch):
            feeds = {name: arrays[i][start : start + self.max_batch] for i, name in self._feeds}
            chunks.append(self.session.run(None, feeds)[0])
        return np.asarray(np.concatenate(chunks) if len(chunks) > 1 else chunks[0], dtype=np.float32)


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    return np.ascontiguousarray(_plain(x).detach().cpu().numpy())


class FastaiPipeline:
    """fastai's own `test_dl` + `get_preds` on one learner; learners are not safe to call from two threads."""

    def __init__(self, learn: Any) -> None:
        self.learn = learn
        self._lock = threading.Lock()

    def inputs(self, items: Any) -> tuple[Any, ...]:
        """The model's input tensors for `items`, as `test_dl` makes them (one batch, in order)."""
        with self._lock:
            dl = self.learn.dls.test_dl(items, num_workers=0, bs=max(len(items), 1))
            return tuple(dl.one_batch())

    def outputs(self, items: Any) -> np.ndarray:
        with self._lock:
            dl = self.learn.dls.test_dl(items, num_workers=0)
            probs, _ = self.learn.get_preds(dl=dl)
        return np.asarray(probs.float().cpu().numpy())


# choosing a runtime at load ----------------------------------------------------------------------------
def select_runtime(predictor: Accelerable, options: RuntimeOptions, *, sha256: str | None) -> RuntimeChoice:
    """Put ONNX Runtime under `predictor` when the setting allows and it matches torch; say what runs.

    `auto` falls back to torch with the reason; `onnx` raises `LoadError` instead (the model fails).
    """
    if options.precision is Precision.FP16:
        try:
            return _use_fp16(predictor)
        except RuntimeUnavailable as exc:  # fp32, and the runtime the setting picks
            choice = select_runtime(predictor, replace(options, precision=Precision.FP32), sha256=sha256)
            return replace(choice, note=MSG_PRECISION_FP32.format(reason=exc, note=choice.note))
    if options.setting is RuntimeSetting.TORCH:
        return RuntimeChoice("torch", MSG_RUNTIME_TORCH_SETTING)
    try:
        note = _use_onnx(predictor, options, sha256=sha256)
    except RuntimeUnavailable as exc:
        if options.setting is RuntimeSetting.ONNX:
            raise LoadError(MSG_RUNTIME_REQUIRED.format(reason=exc)) from None
        logger.info("ONNX Runtime not used: %s", exc)
        return RuntimeChoice("torch", MSG_RUNTIME_FALLBACK.format(reason=exc))
    return RuntimeChoice("onnx", note)


def _use_fp16(predictor: Accelerable) -> RuntimeChoice:
    """The torch forward under float16 autocast, when the model runs on CUDA in torch and matches fp32."""
    torch_model = predictor.runtime
    if not predictor.fast_path or not isinstance(torch_model, TorchModel):
        raise RuntimeUnavailable(MSG_RUNTIME_NO_FAST_PATH)
    import torch

    if torch_model.device.type != "cuda":
        raise RuntimeUnavailable(MSG_PRECISION_CPU.format(device=torch_model.device))
    inputs = predictor.parity_inputs()
    expected = [torch_model.outputs(*x) for x in inputs]
    torch_model.half = torch.float16
    try:
        got = [torch_model.outputs(*x) for x in inputs]
        gap = max(
            parity_gap(ref, out, labels=predictor.classifies, tolerance=FP16_TOLERANCE)
            for ref, out in zip(expected, got, strict=True)
        )
    except RuntimeUnavailable:
        torch_model.half = None
        raise
    except Exception as exc:  # noqa: BLE001 - an autocast failure only keeps this model in fp32
        torch_model.half = None
        raise RuntimeUnavailable(f"float16 autocast failed: {type(exc).__name__}: {exc}") from None
    return RuntimeChoice("torch", MSG_PRECISION_FP16.format(diff=gap), precision=Precision.FP16)


def _use_onnx(predictor: Accelerable, options: RuntimeOptions, *, sha256: str | None) -> str:
    if not predictor.fast_path:
        raise RuntimeUnavailable(MSG_RUNTIME_NO_FAST_PATH)
    torch_model = predictor.runtime
    if not isinstance(torch_model, TorchModel):
        raise RuntimeUnavailable(f"the predictor runs {torch_model.name}, not torch")
    import onnxruntime as ort
    import torch

    device = torch_model.device
    if device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeUnavailable(MSG_RUNTIME_NO_CUDA_PROVIDER.format(device=device))
    inputs = predictor.parity_inputs()
    expected = [torch_model.outputs(*x) for x in inputs]
    cache = options.cache_dir / f"{sha256}.onnx" if options.cache_dir is not None and sha256 else None

    def session(model: bytes) -> tuple[OnnxModel, float]:
        try:
            onnx = OnnxModel(
                model,
                input_names=torch_model.input_names,
                device=device,
                threads=torch.get_num_threads(),
                spin=options.spin,
            )
            got = [onnx.outputs(*x) for x in inputs]
        except Exception as exc:  # noqa: BLE001 - whatever ORT says, this model falls back
            reason = f"ONNX Runtime cannot run the export: {type(exc).__name__}: {exc}"
            raise RuntimeUnavailable(reason) from None
        gaps = [
            parity_gap(ref, out, labels=predictor.classifies) for ref, out in zip(expected, got, strict=True)
        ]
        return onnx, max(gaps)

    if cache is not None and cache.is_file():
        try:
            onnx, gap = session(cache.read_bytes())
        except (RuntimeUnavailable, OSError) as exc:
            logger.info("cached ONNX export %s not used (%s): exporting again", cache, exc)
        else:
            predictor.runtime = onnx
            return MSG_RUNTIME_ONNX.format(
                version=ort.__version__, threads=onnx.threads, source=f"cached {cache}", diff=gap
            )
    try:
        model = torch_model.export_onnx(inputs[-1])
    except Exception as exc:  # noqa: BLE001 - an exporter failure belongs to this model only
        raise RuntimeUnavailable(
            MSG_RUNTIME_EXPORT_FAILED.format(reason=f"{type(exc).__name__}: {exc}")
        ) from None
    onnx, gap = session(model)
    source = "exported at load"
    if cache is not None and _write_atomically(cache, model):
        source = f"exported to {cache}"
    predictor.runtime = onnx
    return MSG_RUNTIME_ONNX.format(version=ort.__version__, threads=onnx.threads, source=source, diff=gap)


def parity_gap(
    expected: np.ndarray, got: np.ndarray, *, labels: bool = True, tolerance: float = PARITY_TOLERANCE
) -> float:
    """The largest output difference, relative to max(1, |torch's value|) (a regression's values carry
    their target's units); raises when it is over `tolerance` or, with `labels`, a label differs.

    A label may differ only where torch's two best classes are themselves within float noise of a tie.
    """
    if expected.shape != got.shape:
        raise RuntimeUnavailable(
            MSG_RUNTIME_MISMATCH.format(reason=f"output shape {got.shape}, torch {expected.shape}")
        )
    scale = np.maximum(1.0, np.abs(expected))
    gap = float(np.max(np.abs(expected - got) / scale)) if expected.size else 0.0
    if not np.isfinite(gap) or gap > tolerance:
        raise RuntimeUnavailable(
            MSG_RUNTIME_MISMATCH.format(reason=f"outputs {gap:.1e} apart (limit {tolerance:g})")
        )
    if labels and expected.shape[1] > 1:
        top = np.sort(expected, axis=1)
        clear = top[:, -1] - top[:, -2] > 2 * tolerance
        if (expected.argmax(axis=1) != got.argmax(axis=1))[clear].any():
            raise RuntimeUnavailable(MSG_RUNTIME_MISMATCH.format(reason="different labels"))
    return gap


def _write_atomically(path: Path, data: bytes) -> bool:
    """Best effort: a cache that cannot be written only costs the next load an export."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not cache the ONNX export in %s: %s", path.parent, exc)
        return False
    return True
