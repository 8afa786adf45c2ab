"""``evaluate(..., layer=...)``: Sensitivity-n of token attributions on a text model's embedding."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.evaluation import EvaluatedBatch


class Words(nn.Module):
    """Token ids -> embedding -> ReLU MLP over the mean; ``head`` is the model after the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(30, 6)
        self.head = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.embedding(ids).mean(1))


class Head(nn.Module):
    """The same model as a function of the embedding output."""

    def __init__(self, words: Words) -> None:
        super().__init__()
        self.words = words

    def forward(self, embedded: Tensor) -> Tensor:
        return self.words.head(embedded.mean(1))


def test_layer_sensitivity_equals_sensitivity_of_the_model_after_the_layer() -> None:
    torch.manual_seed(0)
    model = Words().eval()
    ids = torch.randint(1, 30, (7, 10))
    labels = torch.randint(0, 3, (7,))
    tokens = torch.arange(10)
    seen: list[EvaluatedBatch] = []
    table = gradattr.evaluate(
        model, (ids, labels), ["deeplift", "saliency"], layer="embedding", feature_groups=tokens, num_subsets=15,
        batch_size=4, progress=False, on_batch=seen.append,
    )  # fmt: skip
    embedded = model.embedding(ids).detach()
    for method in ("deeplift", "saliency"):
        maps = gradattr.attribute(model, ids, method=method, target=labels, layer="embedding")
        direct = gradattr.sensitivity_n(
            Head(model), embedded, maps, target=labels, ns=table.ns, num_subsets=15, feature_groups=tokens
        )
        assert torch.allclose(table.results[method].per_sample, direct.per_sample, equal_nan=True, atol=1e-9)
    assert [b.inputs.shape for b in seen] == [(4, 10, 6), (3, 10, 6)]
    assert torch.equal(torch.cat([b.model_inputs for b in seen]), ids)
    assert torch.allclose(seen[0].function(seen[0].inputs), model(ids[:4]))


def test_layer_function_rejects_rows_of_unknown_samples() -> None:
    model = Words().eval()
    function = gradattr.evaluation.LayerFunction.of(model, torch.randint(1, 30, (3, 5)), "embedding")
    with pytest.raises(ValueError, match="6 rows given for a batch of 3"):
        function(torch.zeros(6, 5, 6))
    assert function.for_sample(1)(torch.zeros(6, 5, 6)).shape == (6, 3)
