"""Why a row got its answer: integrated gradients per input column of a tabular learner.

The gradients run from a reference row taken from the learner itself to the row, over the continuous
inputs (as the model sees them, after `Normalize`) and the categorical embeddings (each embedding's
dimensions summed into its column). The reference:
- continuous columns: their training mean (`Normalize`'s `means`: 0 in the model's input); 0 when the
  learner has no `Normalize`;
- categorical columns: `#na#` (Categorify's code 0). The export keeps no training rows, so the most frequent
  category is unknown to the learner; `#na#` is the category fastai gives a missing or unseen value, and
  when training had none its embedding stayed near its initialisation (fastai draws embeddings with
  std 0.01): the "no information" point of each column;
- `FillMissing`'s flags (`<column>_na`): not missing, so that the reference is the mean itself; a flag's
  attribution is added to its column's.
Completeness (`base_value + sum(attributions) = output`) is checked per row; the step count doubles until
it holds within `gradients.tolerance`.
"""

from __future__ import annotations

import threading
from typing import Any

from service.explain.core import Explained, Method, RowExplanation, chosen, score
from service.explain.gradients import ModelCopy, integrated_gradients
from service.inference.tabular import PreparedRows, TabularPredictor
from service.inference.tabular_spec import MissingFlag

NA = "#na#"


class RowExplainer:
    """Explains a `TabularPredictor`'s rows, one at a time, on its own copy of the model."""

    methods = (Method.INTEGRATED_GRADIENTS,)

    def __init__(self, predictor: TabularPredictor, *, name: str) -> None:
        import torch

        self.predictor, self.name = predictor, name
        self.copy = ModelCopy(predictor.torch_model)
        model = self.copy.model
        spec = predictor.spec
        # Which input column each model input belongs to: embeddings (their widths), then continuous.
        self._owners: list[tuple[str, int]] = [
            (cat.flag_of if isinstance(cat, MissingFlag) else cat.name, int(embedding.embedding_dim))
            for cat, embedding in zip(spec.model_categorical, model.embeds, strict=True)
        ]
        self._columns = spec.column_names
        codes = [
            cat.codes.get(False, 0) if isinstance(cat, MissingFlag) else 0 for cat in spec.model_categorical
        ]
        self._reference_cat = torch.tensor([codes], dtype=torch.int64, device=self.copy.device)
        self._reference_cont = torch.zeros((1, len(spec.continuous)), device=self.copy.device)
        self.reference: dict[str, Any] = {cat.name: NA for cat in spec.categorical}
        self.reference.update({c.name: c.mean if c.mean is not None else 0.0 for c in spec.continuous})
        self._lock = threading.Lock()

    def _embed(self, x_cat: Any) -> Any:
        import torch

        model = self.copy.model
        if not model.n_emb:
            return torch.zeros((len(x_cat), 0), device=self.copy.device)
        return torch.cat([e(x_cat[:, i]) for i, e in enumerate(model.embeds)], dim=1)

    def _after_embeddings(self, embedded: Any, x_cont: Any) -> Any:
        """`TabularModel.forward` from its embeddings' output on (eval mode: no dropout)."""
        import torch

        model = self.copy.model
        x = model.emb_drop(embedded)
        if model.n_cont:
            if model.bn_cont is not None:
                x_cont = model.bn_cont(x_cont)
            x = torch.cat([x, x_cont], dim=1) if model.n_emb else x_cont
        return model.layers(x)

    def explain(self, prepared: PreparedRows, *, target: int | None, method: Method) -> Explained:
        import torch

        head = self.predictor.head
        with self._lock:
            x_cat, x_cont = (self.copy.tensor(x) for x in self.predictor.encoded(prepared))
            with torch.no_grad():
                embedded = self._embed(x_cat)
                reference = self._embed(self._reference_cat)
                outputs = self.copy.activation(self._after_embeddings(embedded, x_cont)).float()
            numbers = outputs.cpu().numpy()
            items = []
            for i in range(prepared.n):
                index, name = chosen(head, target, numbers[i])
                row = (embedded[i : i + 1], x_cont[i : i + 1])
                items.append(self._row(*row, reference, index=index, name=name))
        return Explained(numbers, items, reference=self.reference)

    def _row(self, embedded: Any, x_cont: Any, reference: Any, *, index: int, name: str) -> RowExplanation:
        task, activation = self.predictor.head.task, self.copy.activation
        own = activation(self._after_embeddings(embedded, x_cont)).float().detach()
        with_cats, with_conts = embedded.shape[1] > 0, x_cont.shape[1] > 0

        def forward(*parts: Any) -> Any:
            e = parts[0] if with_cats else embedded.new_zeros((len(parts[0]), 0))
            c = parts[-1] if with_conts else x_cont.new_zeros((len(parts[0]), 0))
            return score(task, activation(self._after_embeddings(e, c)).float(), index, own)

        inputs = ((embedded,) if with_cats else ()) + ((x_cont,) if with_conts else ())
        baselines = ((reference,) if with_cats else ()) + ((self._reference_cont,) if with_conts else ())
        result = integrated_gradients(forward, inputs, baselines)
        attributions = dict.fromkeys(self._columns, 0.0)
        if with_cats:
            dims = result.attributions[0][0].detach().cpu().numpy()
            start = 0
            for column, width in self._owners:
                attributions[column] += float(dims[start : start + width].sum())
                start += width
        if with_conts:
            conts = result.attributions[-1][0].detach().cpu().numpy()
            for cont, value in zip(self.predictor.spec.continuous, conts, strict=True):
                attributions[cont.name] += float(value)
        return RowExplanation(
            target=name,
            method=Method.INTEGRATED_GRADIENTS,
            output=result.output,
            base_value=result.base_value,
            attributions=attributions,
            error=result.error,
        )
