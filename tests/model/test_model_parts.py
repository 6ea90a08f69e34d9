"""The DLRM's parts, each against a slow, obvious computation written out by hand (float64, small sizes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlrm_nb.data.criteo import N_CAT, N_DENSE
from dlrm_nb.model.dlrm import DLRM, MLP, DlrmArch, DotInteraction, Embeddings

DIM = 4
PAIRS = (N_CAT + 1) * N_CAT // 2
TABLE_SIZES = tuple(3 + (7 * j) % 11 for j in range(N_CAT))  # 26 small tables of 3..13 rows


def _relu(v: list[float]) -> list[float]:
    return [max(0.0, x) for x in v]


def _sigmoid(v: list[float]) -> list[float]:
    return [1.0 / (1.0 + math.exp(-x)) for x in v]


def _linear(layer: torch.nn.Linear, v: list[float]) -> list[float]:
    """y_o = b_o + sum_i W[o, i] v_i, one output at a time."""
    weight, bias = layer.weight.tolist(), layer.bias.tolist()
    return [bias[o] + sum(w * x for w, x in zip(weight[o], v, strict=True)) for o in range(len(bias))]


def _mlp_by_hand(mlp: MLP, v: list[float], last: str) -> list[float]:
    """Linear then ReLU on every layer; the last layer's activation is ``last``."""
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    for k, layer in enumerate(linears):
        v = _linear(layer, v)
        v = _sigmoid(v) if k == len(linears) - 1 and last == "sigmoid" else _relu(v)
    return v


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _pairs_by_hand(vectors: list[list[float]]) -> list[float]:
    """Dot products of the pairs (i, j), j < i, in row-major order: (1,0), (2,0), (2,1), (3,0), ..."""
    return [_dot(vectors[i], vectors[j]) for i in range(len(vectors)) for j in range(i)]


def _small_model(seed: int = 0) -> DLRM:
    torch.manual_seed(seed)
    arch = DlrmArch(DIM, (N_DENSE, 8, DIM), (DIM + PAIRS, 6, 5, 1), TABLE_SIZES)
    model = DLRM(arch).double().eval()
    with torch.no_grad():  # wider weights than the default init, so that the activations matter
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return model


def _inputs(batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    dense = torch.rand(batch, N_DENSE, generator=generator, dtype=torch.float64) * 3
    ids = torch.stack([torch.randint(0, rows, (batch,), generator=generator) for rows in TABLE_SIZES], dim=1)
    return dense, ids


def test_dot_interaction_is_the_lower_triangle_in_row_major_order() -> None:
    torch.manual_seed(2)
    stacked = torch.randn(3, N_CAT + 1, 5, dtype=torch.float64)
    out = DotInteraction()(stacked)
    assert out.shape == (3, PAIRS) == (3, 351) and out.dtype == torch.float64
    for b in range(3):
        expected = _pairs_by_hand(stacked[b].tolist())
        np.testing.assert_allclose(out[b].numpy(), expected, rtol=1e-12, atol=1e-12)
    # the order itself, spelled out on 4 vectors whose pairwise products are all different
    four = torch.tensor([[[1.0], [2.0], [3.0], [5.0]]], dtype=torch.float64)
    assert DotInteraction(vectors=4)(four).tolist() == [[2.0, 3.0, 6.0, 5.0, 10.0, 15.0]]


def test_embeddings_index_the_weight_rows() -> None:
    torch.manual_seed(3)
    tables = Embeddings(TABLE_SIZES, DIM).double()
    assert len(tables) == N_CAT == 26
    assert [t.weight.shape for t in tables] == [(rows, DIM) for rows in TABLE_SIZES]
    _, ids = _inputs(7)
    out = tables(ids)
    assert out.shape == (7, N_CAT, DIM)
    for b in range(7):
        for j in range(N_CAT):
            assert torch.equal(out[b, j], tables[j].weight[ids[b, j]]), (b, j)
    with pytest.raises(IndexError):
        tables(torch.full((1, N_CAT), max(TABLE_SIZES), dtype=torch.int64))


@pytest.mark.parametrize(("widths", "last"), [((13, 8, 6, 4), "relu"), ((9, 7, 5, 1), "sigmoid")])
def test_mlp_is_linear_relu_and_the_named_last_activation(widths: tuple[int, ...], last: str) -> None:
    torch.manual_seed(4)
    mlp = MLP(widths, last=last).double()
    # upstream's layout: Linear at even indices, the activation after it at odd indices
    kinds = [type(m).__name__ for m in mlp]
    expected_last = "Sigmoid" if last == "sigmoid" else "ReLU"
    assert kinds == ["Linear", "ReLU"] * (len(widths) - 2) + ["Linear", expected_last]
    assert [(m.in_features, m.out_features) for m in list(mlp)[::2]] == [
        (widths[k], widths[k + 1]) for k in range(len(widths) - 1)
    ]
    with torch.no_grad():
        for parameter in mlp.parameters():
            parameter.normal_(0.0, 0.7)
    x = torch.randn(6, widths[0], dtype=torch.float64)
    with torch.no_grad():
        out = mlp(x)
    assert out.shape == (6, widths[-1])
    for b in range(6):
        np.testing.assert_allclose(
            out[b].numpy(), _mlp_by_hand(mlp, x[b].tolist(), last), rtol=1e-12, atol=1e-12
        )
    if last == "relu":  # the last bottom layer has its ReLU too: some outputs are clipped to exactly 0
        assert (out >= 0).all() and (out == 0).any()
    else:
        assert ((out > 0) & (out < 1)).all()


def test_forward_equals_the_slow_composition() -> None:
    model = _small_model()
    dense, ids = _inputs(9)
    with torch.no_grad():
        out = model(dense, ids)
    assert out.shape == (9,) and out.dtype == torch.float64
    for b in range(9):
        bottom = _mlp_by_hand(model.bot_l, dense[b].tolist(), "relu")
        vectors = [bottom] + [model.emb_l[j].weight[ids[b, j]].tolist() for j in range(N_CAT)]
        top_input = bottom + _pairs_by_hand(vectors)
        assert len(top_input) == DIM + 351
        (expected,) = _mlp_by_hand(model.top_l, top_input, "sigmoid")
        assert out[b].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # float32, as the model is used: the same probabilities to float32 precision
    model32 = _small_model().float()
    with torch.no_grad():
        out32 = model32(dense.float(), ids)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), out.numpy(), rtol=0, atol=1e-5)


def test_parameter_names_are_upstreams() -> None:
    model = _small_model()
    names = set(model.state_dict())
    expected = {f"emb_l.{j}.weight" for j in range(N_CAT)}
    expected |= {f"bot_l.{k}.{p}" for k in (0, 2) for p in ("weight", "bias")}
    expected |= {f"top_l.{k}.{p}" for k in (0, 2, 4) for p in ("weight", "bias")}
    assert names == expected  # the interaction's index buffer is not saved
