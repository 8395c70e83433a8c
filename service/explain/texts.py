"""Why a text got its answer: integrated gradients over the embeddings of fastai's tokens.

The path runs from the all-padding text (`xxpad`'s embedding is zero: `padding_idx`) to the text's own
embeddings, through the learner's encoder and head exactly as `SentenceEncoder` and
`PoolingLinearClassifier` compute them, but in one pass over the whole text: `SentenceEncoder` feeds its
module `bptt` tokens at a time and the AWD_LSTM detaches its hidden state between them (truncated
backpropagation, for training), which would cut the gradients of earlier chunks; one pass gives the same
outputs with every gradient. Each token's attribution is its embedding's dimensions summed.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

from service.errors import MSG_EXPLAIN_ENCODER, InvalidInput
from service.explain.core import Explained, Method, TextExplanation, chosen, score
from service.explain.gradients import ModelCopy, integrated_gradients
from service.inference.text import PreparedTexts, TextPredictor


class TextExplainer:
    """Explains a `TextPredictor`'s texts, one at a time, on its own copy of the model."""

    methods = (Method.INTEGRATED_GRADIENTS,)

    def __init__(self, predictor: TextPredictor, *, name: str) -> None:
        self.predictor, self.name = predictor, name
        self.copy = ModelCopy(predictor.torch_model)
        # The copy is `text.FirstOutput(SequentialRNN(SentenceEncoder, PoolingLinearClassifier))`.
        inner = self.copy.model.inner
        self.encoder, self.classifier = inner[0], inner[-1]
        self.module = self.encoder.module
        if "from_embeds" not in inspect.signature(self.module.forward).parameters:
            self.module = None
        self._lock = threading.Lock()

    def _embeddings(self, ids: Any) -> Any:
        return self.module.encoder.weight[ids]

    def _forward(self, embedded: Any, *, length: int) -> Any:
        """The classifier's raw scores from the embeddings of one unpadded text (batch of path points)."""
        import torch

        encoder = self.encoder
        encoder.reset()
        out = self.module(embedded, from_embeds=True)
        bptt, max_len = int(encoder.bptt), encoder.max_len
        # `SentenceEncoder` keeps the chunks (starting at multiples of bptt) within max_len of the end.
        first = 0
        while max_len is not None and length - first > max_len:
            first += bptt
        out = out[:, first:]
        mask = torch.zeros(out.shape[:2], dtype=torch.bool, device=out.device)
        return self.classifier((out, mask))[0]

    def explain(self, prepared: PreparedTexts, *, target: int | None, method: Method) -> Explained:
        import numpy as np
        import torch

        if self.module is None:
            found = type(self.encoder.module).__name__
            raise InvalidInput(MSG_EXPLAIN_ENCODER.format(name=self.name, found=found))
        head, activation = self.predictor.head, self.copy.activation
        with self._lock:
            items, rows = [], []
            for i, ids in enumerate(prepared.ids):
                tensor = torch.as_tensor(ids, dtype=torch.int64, device=self.copy.device)[None]
                embedded = self._embeddings(tensor)
                length = int(tensor.shape[1])
                with torch.no_grad():
                    own = activation(self._forward(embedded, length=length)).float()
                numbers = own.cpu().numpy()[0]
                rows.append(numbers)
                index, name = chosen(head, target, numbers)

                def forward(e: Any, index: int = index, own: Any = own, length: int = length) -> Any:
                    out = activation(self._forward(e, length=length)).float()
                    return score(head.task, out, index, own)

                result = integrated_gradients(forward, (embedded,), (torch.zeros_like(embedded),))
                per_token = result.attributions[0][0].sum(dim=-1).detach().cpu().numpy()
                tokens = prepared.tokens[i] if prepared.tokens else [self.predictor.vocab[t] for t in ids]
                items.append(
                    TextExplanation(
                        target=name,
                        method=Method.INTEGRATED_GRADIENTS,
                        tokens=list(tokens),
                        special=[bool(s) for s in self.predictor.special(ids)],
                        attributions=[float(a) for a in per_token],
                        output=result.output,
                        base_value=result.base_value,
                        error=result.error,
                    )
                )
        return Explained(np.stack(rows), items)
