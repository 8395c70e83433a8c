"""Why an image got its answer: Grad-CAM at the learner's deepest spatial layer, or integrated gradients
on its pixels; the map taken back to the uploaded image's pixels, as grey and as a colour overlay."""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np

from service.errors import MSG_EXPLAIN_NO_LAYER, InvalidInput
from service.explain.core import Explained, ImageExplanation, Method, chosen, score
from service.explain.gradients import ModelCopy, integrated_gradients
from service.inference.vision import PreparedImages, VisionPredictor

# How much of the colour map covers the image where importance is highest (it fades to none at zero).
OVERLAY_ALPHA = 0.6
# A map is scaled to [0, 1] by this quantile of its values, so a few extreme pixels do not wash it out.
SCALE_QUANTILE = 0.99
# The coarsest map Grad-CAM is taken from when a layer has one this fine: a 2×2 map only tells quadrants
# apart. On the demo CIFAR model (32 pixels, resnet18: layer3 2×2, layer2 4×4), occluding the 20% of pixels
# the map ranks highest cost the predicted class 0.181 of probability at 2×2, 0.245 at 4×4, against 0.178
# for random pixels (bench/explain_bench.py). At 224 pixels resnet's last block is 7×7: the usual choice.
MIN_MAP = 4
# Integrated gradients' images per forward: a 224-pixel batch of 64 needs gigabytes for its backward.
IG_BATCH = 16


def body_of(model: Any) -> Any:
    """The learner's body, where Grad-CAM looks: `vision_learner`'s `Sequential(body, head)` first part,
    `unet_learner`'s encoder (`DynamicUnet`'s first layer); any other model as a whole."""
    import torch
    from fastai.vision.models.unet import DynamicUnet

    if isinstance(model, DynamicUnet):
        return model.layers[0]
    if isinstance(model, torch.nn.Sequential) and len(model) == 2:
        return model[0]
    return model


def cam_layer(model: Any, example: Any, *, name: str) -> tuple[str, Any, tuple[int, int]]:
    """The deepest layer of the body whose output still has a spatial map at the served input size: at
    least `MIN_MAP` pixels a side when some layer has one, else more than 1×1. Its name, the module and its
    map's (height, width). Found by running `example` once and taking, among the modules called once, the
    last to finish with such a 4-d output (the outermost inside the body of those that return the same
    tensor: a block returns its last layer's)."""
    import torch

    body = body_of(model)
    finished: list[tuple[str, tuple[int, ...], Any]] = []
    calls: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(module: Any, inputs: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                finished.append((name, tuple(output.shape), output))  # kept alive: ids stay unique

        return record

    modules = dict(body.named_modules())
    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    paths = {id(module): path for path, module in model.named_modules()}
    # A block returns its last layer's very tensor, which in-place layers (a residual sum, ReLU) may still
    # change after that layer's hook saw it: of the modules that give the same tensor, the outermost one
    # inside the body (the last to finish) is hooked, when its output is final.
    named: dict[int, tuple[str, tuple[int, ...]]] = {}
    for n, s, output in finished:
        if n and calls[n] == 1 and len(s) == 4 and s[-1] * s[-2] > 1:
            named.pop(id(output), None)
            named[id(output)] = (n, s)
    maps = list(reversed(named.values())) or [
        (n, s) for n, s, _ in reversed(finished) if not n and len(s) == 4 and s[-1] * s[-2] > 1
    ]
    for layer, shape in sorted(maps, key=lambda found: min(found[1][-2:]) < MIN_MAP):  # stable: deepest first
        module = modules[layer]
        path = paths.get(id(module)) or type(module).__name__
        return f"{path} ({type(module).__name__})", module, (shape[-2], shape[-1])
    raise InvalidInput(MSG_EXPLAIN_NO_LAYER.format(name=name, size=list(example.shape[-2:])))


class ImageExplainer:
    """Explains a `VisionPredictor`'s images, one at a time, on its own copy of the model."""

    methods = (Method.GRADCAM, Method.INTEGRATED_GRADIENTS)

    def __init__(self, predictor: VisionPredictor, *, name: str) -> None:
        self.predictor, self.name = predictor, name
        self.copy = ModelCopy(predictor.torch_model)
        self._lock = threading.Lock()
        self._layer: tuple[str, Any, tuple[int, int]] | None = None

    def layer(self, example: Any) -> tuple[str, Any, tuple[int, int]]:
        if self._layer is None:
            self._layer = cam_layer(self.copy.model, example, name=self.name)
        return self._layer

    def explain(self, prepared: PreparedImages, *, target: int | None, method: Method) -> Explained:
        head = self.predictor.head
        with self._lock:
            x = self.copy.tensor(self.predictor.encoded(prepared))
            raw, activated = self.outputs(x)
            outputs = activated.cpu().numpy()
            items = []
            boxes = self.predictor.heat_boxes(prepared)
            for i, image in enumerate(prepared.images):
                index, name = chosen(head, target, outputs[i])
                layer_name, heat = self.heat(x, i, index=index, method=method, raw=raw, activated=activated)
                items.append(
                    explanation(image, heat, box=boxes[i], target=name, method=method, layer=layer_name)
                )
        return Explained(outputs, items)

    def heat(
        self, x: Any, i: int, *, index: int, method: Method, raw: Any, activated: Any
    ) -> tuple[str | None, np.ndarray]:
        """Image `i` of the batch `x`: the map of importance for target `index` on the model's input pixels
        (and Grad-CAM's layer); `raw`/`activated` = the batch's outputs. Call under the explainer's lock."""
        one = x[i : i + 1]
        if method is Method.GRADCAM:
            return self._gradcam(one, index, raw[i : i + 1])
        return None, self._integrated(one, index, activated[i : i + 1])

    def outputs(self, x: Any) -> tuple[Any, Any]:
        """The model's raw and activated outputs for the batch `x` (no gradients)."""
        import torch

        with torch.no_grad():
            raw = self.copy.model(x)
            return raw, self.copy.activation(raw).float()

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def _gradcam(self, x: Any, index: int, own: Any) -> tuple[str, np.ndarray]:
        """Grad-CAM (ReLU of the gradient-weighted map) of the target's raw score, at the input's size."""
        import torch
        from captum.attr import LayerGradCam

        name, layer, _ = self.layer(x)
        task, model = self.predictor.head.task, self.copy.model
        cam = LayerGradCam(lambda inp: score(task, model(inp), index, own), layer)
        attribution = cam.attribute(x, relu_attributions=True)
        heat = torch.nn.functional.interpolate(
            attribution.detach().float(), size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False
        )
        return name, heat[0, 0].cpu().numpy()

    def _integrated(self, x: Any, index: int, own: Any) -> np.ndarray:
        """Integrated gradients of the target's activated output from the all-zero input (the training
        mean colour, after the learner's `Normalize`), summed over channels; the positive part: evidence
        for the target."""
        import torch

        task, model, activation = self.predictor.head.task, self.copy.model, self.copy.activation
        result = integrated_gradients(
            lambda inp: score(task, activation(model(inp)).float(), index, own),
            (x,),
            (torch.zeros_like(x),),
            max_steps=64,
            batch=IG_BATCH,
        )
        return np.asarray(result.attributions[0][0].sum(dim=0).clamp(min=0).detach().cpu().numpy())


def scaled(heat: np.ndarray) -> np.ndarray:
    """The map in [0, 1]: divided by its `SCALE_QUANTILE` quantile (all zeros stay zeros)."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    top = float(np.quantile(heat, SCALE_QUANTILE)) if heat.size else 0.0
    if top <= 0:
        top = float(heat.max()) if heat.size else 0.0
    return np.clip(heat / top, 0.0, 1.0) if top > 0 else np.zeros_like(heat)


def on_image(
    heat: np.ndarray, *, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """A map of the model's input put back on the uploaded image (`size` = (width, height)): stretched over
    the box the learner's resize took from it (bilinear), zero outside it."""
    from PIL import Image

    left, top, width, height = box
    stretched = Image.fromarray(heat.astype(np.float32), mode="F").resize(
        (max(1, round(width)), max(1, round(height))), Image.Resampling.BILINEAR
    )
    canvas = Image.new("F", size, 0.0)
    canvas.paste(stretched, (round(left), round(top)))
    return np.asarray(canvas, dtype=np.float32)


def _colours() -> np.ndarray:
    """matplotlib's `jet` as a 256 × 3 uint8 lookup table (blue: little, red: most)."""
    from matplotlib import colormaps

    return np.asarray(colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255, dtype=np.float32)


_JET: np.ndarray | None = None


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def explanation(
    image: Any,
    heat: np.ndarray,
    *,
    box: tuple[float, float, float, float],
    target: str,
    method: Method,
    layer: str | None,
) -> ImageExplanation:
    """The map (model input's pixels) as the explanation of `image`: scaled, on the image, as PNGs."""
    global _JET
    if _JET is None:
        _JET = _colours()
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    full = on_image(scaled(heat), box=box, size=(rgb.shape[1], rgb.shape[0]))
    levels = np.round(full * 255).astype(np.uint8)
    alpha = (OVERLAY_ALPHA * full)[..., None]
    overlay = np.round(rgb * (1 - alpha) + _JET[levels] * alpha).clip(0, 255).astype(np.uint8)
    return ImageExplanation(
        target=target,
        method=method,
        heatmap=full,
        heatmap_png=_png(levels),
        overlay_png=_png(overlay),
        layer=layer,
    )
