"""What each model kind's tensors are on /v2: its inputs and outputs in model metadata, the request's
tensors turned into what the kind's `Predictor.prepare` takes, and predictions turned into outputs.

Inputs per kind (`V2_KINDS`), outputs per task (`V2_TASKS`: classification `label` + `probabilities`
(+ `top_k` for images), multi_label `probabilities` + `predicted` BOOL, regression `values`, points
`points` FP32 [N, K, 2] in the input image's pixels, segmentation `mask` UINT8 [N, H, W] in the input
image's pixels: the images of one request share a size, rating `rating` FP32 [N], NaN for an unknown id).

Tabular: one input per column of the learner's schema, shape [N] or [N, 1]; continuous columns FP64
(or FP32, INT64, INT32), categorical ones BYTES. A missing value is JSON `null` (or NaN in a float
tensor); the learner's fill then applies with the same warning as /api/v1. Vision: `image`, BYTES [N]
of encoded files (base64 text when sent as JSON), or UINT8 [N, H, W, 3] pixels. Collab: `user` and
`item`, [N] each, BYTES (ids as text) or INT64/INT32 (whole-number ids).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from service.api.limits import INLINE_ROWS, check_files, check_rows, check_texts
from service.api.v2.codec import OutputTensor, Tensor
from service.errors import (
    MSG_V2_DATATYPE,
    MSG_V2_MASK_SIZES,
    MSG_V2_MISSING_INPUTS,
    MSG_V2_NOT_BASE64,
    MSG_V2_NOT_UTF8,
    MSG_V2_SHAPE,
    MSG_V2_UNEQUAL_N,
    MSG_V2_UNKNOWN_INPUTS,
    BadRequest,
)
from service.inference.collab import CollabPredictor, PreparedPairs
from service.inference.images import ACCEPTED_TYPES, UploadedImage
from service.inference.predictor import AnyPredictor, ModelKind
from service.inference.tabular import PreparedRows, TabularPredictor
from service.inference.tasks import Task
from service.inference.text import PreparedTexts, TextPredictor
from service.inference.vision import PreparedImages, VisionPredictor
from service.schemas.v2 import MetadataTensor
from service.settings import Settings

CONTINUOUS_TYPES = ("FP64", "FP32", "INT64", "INT32")
IMAGE_INPUT = "image"
TEXT_INPUT = "text"
LABEL, PROBABILITIES, TOP_K = "label", "probabilities", "top_k"
PREDICTED, VALUES, POINTS = "predicted", "values", "points"
MASK = "mask"
USER_INPUT, ITEM_INPUT, RATING = "user", "item", "rating"
ID_TYPES = ("BYTES", "INT64", "INT32")
TOP_K_FORMAT = "probability:index:label"
# Below this many rows a request's values go one by one: each Arrow call costs about as much as a dict
# lookup per value of a few dozen rows (a one-row request spent a third of its time in them, py-spy).
ARROW_MIN_ROWS = 32


def _names(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


def _check_names(tensors: list[Tensor], expected: list[str]) -> dict[str, Tensor]:
    by_name = {t.name: t for t in tensors}
    missing = [n for n in expected if n not in by_name]
    if missing:
        raise BadRequest(MSG_V2_MISSING_INPUTS.format(names=_names(missing), expected=_names(expected)))
    unknown = [n for n in by_name if n not in expected]
    if unknown:
        raise BadRequest(MSG_V2_UNKNOWN_INPUTS.format(names=_names(unknown), expected=_names(expected)))
    return by_name


# -- tabular ---------------------------------------------------------------------------------------------
def tabular_inputs(predictor: TabularPredictor) -> list[MetadataTensor]:
    spec = predictor.spec
    inputs = [
        MetadataTensor(
            name=c.name,
            datatype="FP64",
            shape=[-1],
            parameters={"accepted_datatypes": list(CONTINUOUS_TYPES), "nullable": c.nullable},
        )
        for c in spec.continuous
    ]
    inputs += [
        MetadataTensor(
            name=c.name,
            datatype="BYTES",
            shape=[-1],
            parameters={"categories": [str(v) for v in c.categories], "nullable": True},
        )
        for c in spec.categorical
    ]
    return inputs


def _rows_of(tensor: Tensor) -> int:
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
        raise BadRequest(
            MSG_V2_SHAPE.format(name=tensor.name, shape=list(shape), expected="[N] or [N, 1], N ≥ 1")
        )
    return shape[0]


def _text(tensor: Tensor) -> list[Any]:
    values = tensor.data.reshape(-1).tolist()
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                values[i] = value.decode()
            except UnicodeDecodeError:
                raise BadRequest(MSG_V2_NOT_UTF8.format(name=tensor.name, index=i)) from None
    return values


def _numbers(tensor: Tensor) -> list[Any]:
    values = tensor.data.reshape(-1)
    if tensor.datatype.startswith("FP"):
        numbers: list[Any] = values.astype(np.float64).tolist()
        return [None if v != v else v for v in numbers]  # NaN is a missing value
    return list(values.tolist())


def _tabular_tensors(
    predictor: TabularPredictor, tensors: list[Tensor], *, max_rows: int
) -> dict[str, Tensor]:
    """The request's tensors by column, checked: every column once, one shape, N within the limit, the
    datatypes each kind of column takes."""
    spec = predictor.spec
    by_name = _check_names(tensors, spec.column_names)
    counts = {name: _rows_of(tensor) for name, tensor in by_name.items()}
    if len(set(counts.values())) > 1:
        raise BadRequest(MSG_V2_UNEQUAL_N.format(counts=counts))
    check_rows(next(iter(counts.values())), max_rows)
    for names, accepted in (
        ([c.name for c in spec.continuous], CONTINUOUS_TYPES),
        ([c.name for c in spec.categorical], ("BYTES",)),
    ):
        for name in names:
            if by_name[name].datatype not in accepted:
                raise BadRequest(
                    MSG_V2_DATATYPE.format(
                        name=name, datatype=by_name[name].datatype, accepted=", ".join(accepted)
                    )
                )
    return by_name


def tabular_rows(
    predictor: TabularPredictor, tensors: list[Tensor], *, max_rows: int
) -> list[dict[str, Any]]:
    """The tensors as /api/v1's JSON rows (the same `prepare` then validates and resolves them)."""
    by_name = _tabular_tensors(predictor, tensors, max_rows=max_rows)
    return _rows(predictor, _row_values(predictor, by_name))


def _row_values(predictor: TabularPredictor, by_name: dict[str, Tensor]) -> dict[str, list[Any]]:
    """Each column's values as JSON rows hold them (numbers, None where missing; text)."""
    spec = predictor.spec
    columns = {c.name: _numbers(by_name[c.name]) for c in spec.continuous}
    columns |= {c.name: _text(by_name[c.name]) for c in spec.categorical}
    return columns


def _rows(predictor: TabularPredictor, columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = predictor.spec.column_names
    return [
        dict(zip(names, values, strict=True)) for values in zip(*(columns[n] for n in names), strict=True)
    ]


def _arrow_columns(predictor: TabularPredictor, by_name: dict[str, Tensor]) -> dict[str, pa.Array] | None:
    """Every column as one Arrow array (numbers, NaN missing; text, UTF-8 checked), without a Python object
    per value; None when a BYTES tensor holds anything but UTF-8 text or null."""
    spec = predictor.spec
    arrays = {c.name: pa.array(by_name[c.name].data.reshape(-1), from_pandas=True) for c in spec.continuous}
    try:
        for cat in spec.categorical:
            arrays[cat.name] = pa.array(by_name[cat.name].data.reshape(-1), type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return arrays


def prepare_tabular(predictor: TabularPredictor, tensors: list[Tensor], *, max_rows: int) -> PreparedRows:
    """All column tensors resolved in one columnar pass (`TabularPredictor.prepare_arrays`) from
    `ARROW_MIN_ROWS` rows up. Fewer rows go through the rows path, as does a request with a value the
    columnar pass cannot take (bytes that are not UTF-8, a missing number without a fill, infinity): its
    errors name the tensor and index, or the row and column."""
    by_name = _tabular_tensors(predictor, tensors, max_rows=max_rows)

    def per_row() -> PreparedRows:
        return predictor.prepare(tabular_rows(predictor, tensors, max_rows=max_rows))

    n = _rows_of(next(iter(by_name.values())))
    if n < ARROW_MIN_ROWS:
        # The values as they are, checked and resolved a column at a time; the rows only when a value is
        # not plainly valid, for `prepare`'s errors.
        values = _row_values(predictor, by_name)
        return predictor.prepare_columns(values, n, rows=partial(_rows, predictor, values))
    arrays = _arrow_columns(predictor, by_name)
    if arrays is None:
        return per_row()
    return predictor.prepare_arrays(arrays.__getitem__, n, per_row=per_row)


# -- vision ----------------------------------------------------------------------------------------------
def vision_inputs(predictor: VisionPredictor) -> list[MetadataTensor]:
    size = predictor.image_size
    return [
        MetadataTensor(
            name=IMAGE_INPUT,
            datatype="BYTES",
            shape=[-1],
            parameters={
                "content": "an encoded image file per element: " + ", ".join(ACCEPTED_TYPES),
                "also_accepts": "UINT8 [N, H, W, 3]: RGB pixels",
                "image_size": list(size) if size else None,
                "max_pixels": predictor.max_pixels,
            },
        )
    ]


def _image_bytes(tensor: Tensor) -> list[UploadedImage]:
    uploads = []
    for i, value in enumerate(tensor.data.reshape(-1).tolist()):
        if isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(MSG_V2_NOT_BASE64.format(name=tensor.name, index=i)) from None
        if value is None:
            raise BadRequest(MSG_V2_NOT_BASE64.format(name=tensor.name, index=i))
        uploads.append(UploadedImage(filename=f"{tensor.name}[{i}]", data=value))
    return uploads


def prepare_vision(predictor: VisionPredictor, tensors: list[Tensor], *, max_files: int) -> PreparedImages:
    tensor = _check_names(tensors, [IMAGE_INPUT])[IMAGE_INPUT]
    shape = tensor.shape
    if tensor.datatype == "BYTES":
        n = _rows_of(tensor)
        check_files(n, max_files)
        return predictor.prepare(_image_bytes(tensor))
    if tensor.datatype == "UINT8":
        if len(shape) != 4 or shape[3] != 3 or min(shape) < 1:
            raise BadRequest(
                MSG_V2_SHAPE.format(name=tensor.name, shape=list(shape), expected="[N, H, W, 3]")
            )
        check_files(shape[0], max_files)
        return predictor.prepare_pixels(tensor.data)
    raise BadRequest(
        MSG_V2_DATATYPE.format(name=IMAGE_INPUT, datatype=tensor.datatype, accepted="BYTES or UINT8")
    )


# -- collab ----------------------------------------------------------------------------------------------
def collab_inputs(predictor: CollabPredictor) -> list[MetadataTensor]:
    return [
        MetadataTensor(
            name=name,
            datatype="BYTES",
            shape=[-1],
            parameters={
                "accepted_datatypes": list(ID_TYPES),
                "column": ids.column,
                "known": ids.count,
                "content": f"a {ids.side} id per element (text, or whole numbers as INT64/INT32)",
            },
        )
        for name, ids in ((USER_INPUT, predictor.users), (ITEM_INPUT, predictor.items))
    ]


def _ids(tensor: Tensor) -> list[Any]:
    if tensor.datatype == "BYTES":
        return _text(tensor)
    if tensor.datatype in ("INT64", "INT32"):
        return list(tensor.data.reshape(-1).tolist())
    raise BadRequest(
        MSG_V2_DATATYPE.format(name=tensor.name, datatype=tensor.datatype, accepted=", ".join(ID_TYPES))
    )


def prepare_collab(predictor: CollabPredictor, tensors: list[Tensor], *, max_rows: int) -> PreparedPairs:
    """`user` and `item` tensors as the pairs /api/v1 takes (the same `prepare` resolves them)."""
    by_name = _check_names(tensors, [USER_INPUT, ITEM_INPUT])
    counts = {name: _rows_of(tensor) for name, tensor in by_name.items()}
    if len(set(counts.values())) > 1:
        raise BadRequest(MSG_V2_UNEQUAL_N.format(counts=counts))
    check_rows(counts[USER_INPUT], max_rows)
    users, items = _ids(by_name[USER_INPUT]), _ids(by_name[ITEM_INPUT])
    return predictor.prepare(list(zip(users, items, strict=True)))


# -- text ------------------------------------------------------------------------------------------------
def text_inputs(predictor: TextPredictor) -> list[MetadataTensor]:
    schema = predictor.input_schema()
    return [
        MetadataTensor(
            name=TEXT_INPUT,
            datatype="BYTES",
            shape=[-1],
            parameters={
                "content": "one UTF-8 text per element",
                "tokenizer": schema["tokenizer"],
                "vocab_size": schema["vocab_size"],
            },
        )
    ]


def prepare_text(predictor: TextPredictor, tensors: list[Tensor], *, settings: Settings) -> PreparedTexts:
    """`text` BYTES [N] as /api/v1's texts: the same limits, the same `prepare`."""
    tensor = _check_names(tensors, [TEXT_INPUT])[TEXT_INPUT]
    if tensor.datatype != "BYTES":
        raise BadRequest(MSG_V2_DATATYPE.format(name=TEXT_INPUT, datatype=tensor.datatype, accepted="BYTES"))
    _rows_of(tensor)
    texts = _text(tensor)
    check_texts(texts, max_texts=settings.max_rows, max_chars=settings.max_text_chars)
    return predictor.prepare(texts, where=(TEXT_INPUT,))


# -- the tables: inputs per kind, outputs per task -------------------------------------------------------
@dataclass(frozen=True)
class V2Kind:
    """How one kind's inputs travel as tensors."""

    inputs: Callable[[Any], list[MetadataTensor]]
    # (predictor, tensors, settings) -> what the predictor's `forward_many` takes
    prepare: Callable[[Any, list[Tensor], Settings], Any]
    inline_rows: int  # prepared on the event loop up to this many items (a hop to a thread costs more)
    ranks: bool  # its classifiers offer `top_k`


def _rows_kind(inputs: Callable[[Any], list[MetadataTensor]], prepare: Callable[..., Any]) -> V2Kind:
    """A kind whose request is rows (tabular columns, collab pairs): at most MAX_ROWS, a few prepared on the
    event loop, no `top_k`."""
    return V2Kind(
        inputs=inputs,
        prepare=lambda p, tensors, settings: prepare(p, tensors, max_rows=settings.max_rows),
        inline_rows=INLINE_ROWS,
        ranks=False,
    )


V2_KINDS: dict[ModelKind, V2Kind] = {
    ModelKind.TABULAR: _rows_kind(tabular_inputs, prepare_tabular),
    ModelKind.VISION: V2Kind(
        inputs=vision_inputs,
        prepare=lambda p, tensors, settings: prepare_vision(p, tensors, max_files=settings.max_files),
        inline_rows=0,
        ranks=True,
    ),
    ModelKind.COLLAB: _rows_kind(collab_inputs, prepare_collab),
    ModelKind.TEXT: V2Kind(
        inputs=text_inputs,
        prepare=lambda p, tensors, settings: prepare_text(p, tensors, settings=settings),
        inline_rows=0,
        ranks=True,
    ),
}


def _text_array(values: list[str], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array.reshape(shape)


def _probabilities(head: Any, outputs: np.ndarray) -> OutputTensor:
    return OutputTensor(
        PROBABILITIES, "FP32", np.asarray(outputs, dtype=np.float32), {"classes": head.classes}
    )


def _classification_metadata(head: Any) -> list[MetadataTensor]:
    return [
        MetadataTensor(name=LABEL, datatype="BYTES", shape=[-1]),
        MetadataTensor(
            name=PROBABILITIES,
            datatype="FP32",
            shape=[-1, len(head.classes)],
            parameters={"classes": head.classes},
        ),
    ]


def _classification_outputs(
    head: Any, predictions: list[Any], outputs: np.ndarray
) -> dict[str, OutputTensor]:
    labels = _text_array([p.label for p in predictions], (len(predictions),))
    return {LABEL: OutputTensor(LABEL, "BYTES", labels), PROBABILITIES: _probabilities(head, outputs)}


def _multi_label_metadata(head: Any) -> list[MetadataTensor]:
    shape, parameters = [-1, len(head.classes)], {"classes": head.classes, "threshold": head.threshold}
    return [
        MetadataTensor(name=PROBABILITIES, datatype="FP32", shape=shape, parameters=parameters),
        MetadataTensor(name=PREDICTED, datatype="BOOL", shape=shape, parameters=parameters),
    ]


def _multi_label_outputs(head: Any, predictions: list[Any], outputs: np.ndarray) -> dict[str, OutputTensor]:
    threshold = predictions[0].threshold if predictions else head.threshold
    flags = head.predicted(outputs, threshold)
    parameters = {"classes": head.classes, "threshold": threshold}
    return {
        PROBABILITIES: _probabilities(head, outputs),
        PREDICTED: OutputTensor(PREDICTED, "BOOL", np.asarray(flags, dtype=np.bool_), parameters),
    }


def _regression_metadata(head: Any) -> list[MetadataTensor]:
    return [
        MetadataTensor(
            name=VALUES, datatype="FP32", shape=[-1, len(head.targets)], parameters={"targets": head.targets}
        )
    ]


def _regression_outputs(head: Any, predictions: list[Any], outputs: np.ndarray) -> dict[str, OutputTensor]:
    values = np.asarray(outputs, dtype=np.float32)
    return {VALUES: OutputTensor(VALUES, "FP32", values, {"targets": head.targets})}


def _points_metadata(head: Any) -> list[MetadataTensor]:
    return [
        MetadataTensor(
            name=POINTS,
            datatype="FP32",
            shape=[-1, len(head.targets), 2],
            parameters={"content": "[x, y] per point, in pixels of the input image"},
        )
    ]


def _points_outputs(head: Any, predictions: list[Any], outputs: np.ndarray) -> dict[str, OutputTensor]:
    pixels = np.asarray([p.points for p in predictions], dtype=np.float32).reshape(-1, len(head.targets), 2)
    return {POINTS: OutputTensor(POINTS, "FP32", pixels)}


def _segmentation_metadata(head: Any) -> list[MetadataTensor]:
    return [
        MetadataTensor(
            name=MASK,
            datatype="UINT8",
            shape=[-1, -1, -1],
            parameters={
                "classes": head.classes,
                "content": "[N, H, W]: per pixel of the input image, its class's index in `classes`",
            },
        )
    ]


def _rating_metadata(head: Any) -> list[MetadataTensor]:
    return [
        MetadataTensor(
            name=RATING,
            datatype="FP32",
            shape=[-1],
            parameters={
                "target": head.target,
                "rating_range": list(head.rating_range) if head.rating_range else None,
                "unknown": "NaN (null in JSON) where the learner does not know the user or the item",
            },
        )
    ]


def _segmentation_outputs(head: Any, predictions: list[Any], outputs: np.ndarray) -> dict[str, OutputTensor]:
    sizes = sorted({(p.size[1], p.size[0]) for p in predictions})
    if len(sizes) > 1:
        raise BadRequest(MSG_V2_MASK_SIZES.format(sizes=", ".join(f"{w}x{h}" for w, h in sizes)))
    masks = np.stack([p.mask for p in predictions]).astype(np.uint8)
    return {MASK: OutputTensor(MASK, "UINT8", masks, {"classes": head.classes})}


def _rating_outputs(head: Any, predictions: list[Any], outputs: np.ndarray) -> dict[str, OutputTensor]:
    ratings = np.asarray([np.nan if p.rating is None else p.rating for p in predictions], dtype=np.float32)
    return {RATING: OutputTensor(RATING, "FP32", ratings, {"target": head.target})}


@dataclass(frozen=True)
class V2Task:
    """How one task's outputs travel as tensors: in model metadata, and from a request's predictions."""

    metadata: Callable[[Any], list[MetadataTensor]]
    outputs: Callable[[Any, list[Any], np.ndarray], dict[str, OutputTensor]]


V2_TASKS: dict[Task, V2Task] = {
    Task.CLASSIFICATION: V2Task(_classification_metadata, _classification_outputs),
    Task.MULTI_LABEL: V2Task(_multi_label_metadata, _multi_label_outputs),
    Task.REGRESSION: V2Task(_regression_metadata, _regression_outputs),
    Task.POINTS: V2Task(_points_metadata, _points_outputs),
    Task.SEGMENTATION: V2Task(_segmentation_metadata, _segmentation_outputs),
    Task.RATING: V2Task(_rating_metadata, _rating_outputs),
}


def _ranks(predictor: AnyPredictor) -> bool:
    return V2_KINDS[predictor.kind].ranks and predictor.head.task is Task.CLASSIFICATION


def model_inputs(predictor: AnyPredictor) -> list[MetadataTensor]:
    return V2_KINDS[predictor.kind].inputs(predictor)


def model_outputs(predictor: AnyPredictor) -> list[MetadataTensor]:
    outputs = V2_TASKS[predictor.head.task].metadata(predictor.head)
    if _ranks(predictor):
        outputs.append(
            MetadataTensor(
                name=TOP_K,
                datatype="BYTES",
                shape=[-1, -1],
                parameters={"format": TOP_K_FORMAT, "k": "parameters.top_k of the request"},
            )
        )
    return outputs


def offers_top_k(predictor: AnyPredictor) -> bool:
    """Whether the model's outputs include `top_k` (a classifier of a kind that ranks)."""
    return _ranks(predictor)


def outputs_for(
    predictor: AnyPredictor, predictions: list[Any], outputs: np.ndarray, *, top_k: int | None
) -> dict[str, OutputTensor]:
    """Every output this request can have, by name (the route keeps those asked for)."""
    head = predictor.head
    tensors = V2_TASKS[head.task].outputs(head, predictions, outputs)
    if top_k is not None:
        classes = head.classes
        index = {c: i for i, c in enumerate(classes)}
        k = min(top_k, len(classes))
        ranked = [f"{prob:.6f}:{index[label]}:{label}" for p in predictions for label, prob in p.top_k(k)]
        n = len(predictions)
        tensors[TOP_K] = OutputTensor(TOP_K, "BYTES", _text_array(ranked, (n, k)), {"format": TOP_K_FORMAT})
    return tensors
