"""The inference engine against the obvious implementation: per-table lookups and the plain DLRM."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_prepared
from sklearn.metrics import roc_auc_score

from dlrm_nb.data.criteo import N_CAT, N_DENSE
from dlrm_nb.data.dataset import open_split
from dlrm_nb.exceptions import DlrmNbError, InvalidValueError
from dlrm_nb.model.auto import choose_precision
from dlrm_nb.model.checkpoint import load_checkpoint
from dlrm_nb.model.dlrm import DLRM, preset
from dlrm_nb.model.engine import (
    InferenceEngine,
    PackedTables,
    SeparateTables,
    fuse_rows,
    quantize_rows,
)
from dlrm_nb.model.inference import CPU_BUCKETS, Predictor, PredictorSettings, accuracy_rule, predict_split
from dlrm_nb.model.settings import PRECISIONS, TABLE_PRECISIONS
from dlrm_nb.model.train import TrainSettings, train_demo

DIM = 8


def random_tables(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 60, (N_CAT,), generator=generator).tolist()
    return [torch.randn(rows, DIM, generator=generator) for rows in sizes]


def random_ids(sizes: list[int], batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, rows, (batch,), generator=generator) for rows in sizes], dim=1)


def random_inputs(
    arch_sizes: tuple[int, ...], batch: int, seed: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    dense = torch.rand(batch, N_DENSE, generator=generator).mul(5)
    return dense, random_ids(list(arch_sizes), batch, seed)


def small_model(arch: str = "tb00_40M", rows: int = 50, seed: int = 0) -> DLRM:
    torch.manual_seed(seed)
    model = DLRM(preset(arch).with_tables([rows + j for j in range(N_CAT)])).eval()
    with torch.no_grad():
        for table in model.emb_l:
            table.weight.mul_(0.1)
    return model


def per_table(tables: list[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """The obvious lookup: one table at a time. [B, F] -> [B, F, D]."""
    return torch.stack([table[ids[:, j]] for j, table in enumerate(tables)], dim=1)


@pytest.mark.parametrize(
    ("precision", "fused"), [("fp32", None), ("bf16", None), ("int8", False), ("int8", True)]
)
def test_packed_lookup_equals_per_table_lookup(precision: str, fused: bool | None) -> None:
    tables = random_tables()
    ids = random_ids([len(t) for t in tables], 200)
    packed = PackedTables.pack(tables, precision, fused=fused)
    assert len(packed.weights) == sum(len(t) for t in tables) and packed.precision == precision
    assert packed.fused == bool(fused)
    got = packed(ids)
    assert got.shape == (200, N_CAT, DIM) and got.dtype == torch.float32
    expected = per_table(tables, ids)
    if precision == "fp32":
        assert torch.equal(got, expected)
    elif precision == "bf16":  # exactly the bf16-rounded rows: relative error at most 2^-8
        assert torch.equal(got, per_table([t.bfloat16().float() for t in tables], ids))
        assert torch.all((got - expected).abs() <= expected.abs() * 2**-8)
    else:  # the dequantized rows, in either layout
        quantized = [quantize_rows(t) for t in tables]
        dequantized = per_table([values.float() * scales.unsqueeze(1) for values, scales in quantized], ids)
        torch.testing.assert_close(got, dequantized, rtol=1e-6, atol=0)
        scales = per_table([scales.unsqueeze(1) for _, scales in quantized], ids)  # [B, F, 1]
        assert torch.all((got - expected).abs() <= scales / 2 * (1 + 1e-5))
    bf16_out = PackedTables.pack(tables, precision, out_dtype=torch.bfloat16, fused=fused)(ids)
    assert bf16_out.dtype == torch.bfloat16 and torch.equal(bf16_out, got.bfloat16())


def test_int8_rows_dequantize_within_half_a_scale() -> None:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(300, 16, generator=generator) * torch.logspace(-4, 2, 300).unsqueeze(1)
    weight[7] = 0.0  # an all-zero row: scale 0, values 0, no NaN
    values, scales = quantize_rows(weight)
    assert values.dtype == torch.int8 and scales.dtype == torch.float32 and scales.shape == (300,)
    torch.testing.assert_close(scales, weight.abs().amax(dim=1) / 127, rtol=0, atol=0)
    error = (values.float() * scales.unsqueeze(1) - weight).abs()
    assert torch.all(error <= scales.unsqueeze(1) / 2 * (1 + 1e-5))
    nonzero = torch.arange(300) != 7
    assert torch.all(values.abs().amax(dim=1)[nonzero] == 127)
    assert scales[7] == 0 and torch.all(values[7] == 0)


def test_packed_tables_from_already_packed_tensors_copy_nothing() -> None:
    tables = random_tables()
    ids = random_ids([len(t) for t in tables], 50)
    for fused in (False, True):
        packed = PackedTables.pack(tables, "int8", fused=fused)
        again = PackedTables.from_packed(packed.weights, packed.scales, packed.offsets)
        assert again.weights.data_ptr() == packed.weights.data_ptr() and again.fused == fused
        assert torch.equal(again(ids), packed(ids))
    values, scales = quantize_rows(torch.cat(tables))
    fused_rows = fuse_rows(values, scales)
    assert fused_rows.dtype == torch.uint8 and fused_rows.shape == (len(values), DIM + 8)
    assert torch.equal(fused_rows, PackedTables.pack(tables, "int8", fused=True).weights)
    with pytest.raises(DlrmNbError, match="one float32 scale per row"):
        PackedTables.from_packed(values, None, packed.offsets)


def test_engine_takes_already_packed_tables() -> None:
    model = small_model()
    packed = PackedTables.pack([table.weight for table in model.emb_l], "int8")
    engine = InferenceEngine(model, precision="bf16", table_precision="int8", tables=packed)
    assert engine.tables.weights.data_ptr() == packed.weights.data_ptr()
    dense, ids = random_inputs(model.arch.table_sizes, 64)
    with torch.inference_mode():
        expected = InferenceEngine(model, precision="bf16", table_precision="int8")(dense, ids)
        assert torch.equal(engine(dense, ids), expected)
    with pytest.raises(DlrmNbError, match="do not match table precision fp32"):
        InferenceEngine(model, tables=packed)


def test_fp32_engine_equals_dlrm_and_leaves_it_unchanged() -> None:
    model = small_model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    dense, ids = random_inputs(model.arch.table_sizes, 300)
    with torch.inference_mode():
        expected = model(dense, ids)
        engine = InferenceEngine(model)
        assert isinstance(engine.tables, PackedTables)
        torch.testing.assert_close(engine(dense, ids), expected, rtol=0, atol=1e-6)
        unpacked = InferenceEngine(model, pack_limit_bytes=0)  # a table too large to copy
        assert isinstance(unpacked.tables, SeparateTables)
        torch.testing.assert_close(unpacked(dense, ids), expected, rtol=0, atol=1e-6)
        for precision in PRECISIONS:
            out = InferenceEngine(model, precision=precision, table_precision="int8")(dense, ids)
            assert out.dtype == torch.float32 and out.shape == (300,)
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, before[key]), key


def test_table_precision_is_checked() -> None:
    with pytest.raises(
        InvalidValueError, match="table_precision 'fp16' is not valid: use one of fp32, bf16, int8"
    ):
        Predictor(small_model(), table_precision="fp16")


def record_batch_sizes(predictor: Predictor) -> list[int]:
    sizes: list[int] = []

    def hook(_module, args) -> None:
        dense, ids = args
        assert dense.shape[1:] == (N_DENSE,) and ids.shape == (len(dense), N_CAT)
        sizes.append(len(dense))

    predictor.engine.register_forward_pre_hook(hook)
    return sizes


def test_every_forward_runs_at_a_bucket_and_outputs_are_trimmed() -> None:
    model = small_model("kaggle")
    predictor = Predictor(model)
    assert predictor.buckets == CPU_BUCKETS and list(predictor.buckets) == sorted(set(predictor.buckets))
    seen = record_batch_sizes(predictor)
    rng = random.Random(4)
    batches = [1, 15, 16, 17, 63, 64, 65, 1023, 1024, 1025, 2048, 5000, *rng.sample(range(1, 5001), 12)]
    dense, ids = random_inputs(model.arch.table_sizes, 5000)
    with torch.inference_mode():
        reference = model(dense, ids)
    for size in batches:
        out = predictor.predict(dense[:size], ids[:size])
        assert out.shape == (size,) and out.dtype == torch.float32
        torch.testing.assert_close(out, reference[:size], rtol=0, atol=1e-6)
    assert seen and set(seen) <= set(predictor.buckets)
    assert predictor.predict(dense[:0], ids[:0]).shape == (0,)


def test_warm_up_runs_every_bucket_full_and_padded_twice() -> None:
    predictor = Predictor(small_model("kaggle"), precision="bf16", table_precision="int8")
    seen = record_batch_sizes(predictor)
    seconds = predictor.warm_up()
    assert seconds > 0
    assert {size: seen.count(size) for size in set(seen)} == {size: 4 for size in predictor.buckets}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    """A tb00_40M demo model trained in seconds on synthetic data, and its prepared data."""
    root = tmp_path_factory.mktemp("engine_demo")
    synthetic_prepared(root, rows_per_day=3000, test_day_rows=6000, max_ind_range=1_000_000)
    train_demo(root / "prep", root / "demo.pt", TrainSettings(arch="tb00_40M", seed=1), progress=False)
    return root / "prep", root / "demo.pt"


def test_every_precision_pair_passes_the_mlperf_rule_against_fp32(demo) -> None:
    prep, path = demo
    test = open_split(prep, "test")
    model, _ = load_checkpoint(path)
    aucs = {
        (precision, tables): roc_auc_score(
            test.labels(),
            predict_split(
                Predictor(model, precision=precision, table_precision=tables), test, progress=False
            ),
        )
        for precision in PRECISIONS
        for tables in TABLE_PRECISIONS
    }
    reference = aucs["fp32", "fp32"]
    assert reference > 0.6, aucs  # a model that has learned something
    for key, auc in aucs.items():
        assert accuracy_rule(auc, reference) == {"99%": True, "99.9%": True}, (key, aucs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("precision", "tables"), [("fp32", "fp32"), ("fp32", "int8"), ("bf16", "int8"), ("int8", "fp32")]
)
def test_compiled_predictor_matches_eager(precision: str, tables: str) -> None:
    model = small_model("kaggle")
    dense, ids = random_inputs(model.arch.table_sizes, 1500)
    eager = Predictor(model, precision=precision, table_precision=tables).predict(dense, ids)
    predictor = Predictor(model, precision=precision, table_precision=tables, compile=True)
    assert predictor.compiled == (precision != "int8")  # int8 runs eager
    seen = record_batch_sizes(predictor) if precision == "int8" else []
    predictor.warm_up()
    tolerance = 1e-6 if precision == "fp32" else 2e-2
    torch.testing.assert_close(predictor.predict(dense, ids), eager, rtol=0, atol=tolerance)
    assert set(seen) <= set(predictor.buckets)


def test_auto_picks_the_fastest_passing_candidate_and_records_every_one(demo) -> None:
    prep, path = demo
    test = open_split(prep, "test")
    settings = PredictorSettings(table_precision="int8")
    choice = choose_precision(path, test, settings, pairs=2000, batch_size=256, seconds=0.2)
    assert [c.precision for c in choice.candidates] == ["fp32", "bf16", "int8"]  # fp32 first: the reference
    assert (choice.table_precision, choice.pairs, choice.batch_size) == ("int8", 2000, 256)
    model, _ = load_checkpoint(path)
    for candidate in choice.candidates:  # each AUC is that precision's on exactly the first 2000 pairs
        predictor = Predictor(model, precision=candidate.precision, table_precision="int8")
        scores = predict_split(predictor, test, count=2000, progress=False)
        assert candidate.auc == pytest.approx(roc_auc_score(test.labels()[:2000], scores), abs=1e-12)
        assert candidate.passes and candidate.pairs_per_s > 0
    assert choice.chosen == max(choice.candidates, key=lambda c: c.pairs_per_s).precision
    record = choice.record()
    assert record["chosen"] == choice.chosen and len(record["candidates"]) == 3
    assert record["target"] == "99.9%"


def test_auto_keeps_fp32_when_no_candidate_can_be_judged(demo) -> None:
    prep, path = demo
    test = open_split(prep, "test")
    one_class = int(np.argmax(test.labels() != test.labels()[0]))  # pairs before the first other label
    choice = choose_precision(path, test, PredictorSettings(), pairs=one_class, batch_size=64, seconds=0.1)
    assert choice.chosen == "fp32"
    assert [(c.precision, c.auc, c.passes) for c in choice.candidates] == [
        ("fp32", None, True),
        ("bf16", None, False),
        ("int8", None, False),
    ]
