"""The DLRM and its checkpoints against the golden files of the upstream reference."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dlrm_nb.data.dataset import open_split
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.model.checkpoint import (
    CheckpointError,
    infer_arch,
    load_checkpoint,
    load_state_dict,
    save_checkpoint,
)
from dlrm_nb.model.dlrm import DLRM, preset
from dlrm_nb.model.inference import Predictor, accuracy_rule, predict_split

MODELS = ["model_tiny", "model_40M_arch"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("split", "expected"), [("test", "predictions.npy"), ("val", "predictions_val.npy")])
def test_golden_checkpoint_predictions(
    golden: Path, request: pytest.FixtureRequest, name: str, split: str, expected: str
) -> None:
    models = request.getfixturevalue("golden_large") if name == "model_40M_arch" else golden
    config = json.loads((models / name / "model_config.json").read_text())
    model, metadata = load_checkpoint(models / name / "checkpoint.pt")
    assert list(model.arch.table_sizes) == config["ln_emb"]
    assert metadata["nbatches"] == 288 and isinstance(metadata["test_acc"], float)
    predictions = predict_split(Predictor(model), open_split(golden / "prep_M1000_r0", split), progress=False)
    np.testing.assert_allclose(predictions, np.load(models / name / expected), rtol=0, atol=1e-6)


def test_tiny_model_auc_is_the_documented_one(golden: Path) -> None:
    model, _ = load_checkpoint(golden / "model_tiny" / "checkpoint.pt")
    test = open_split(golden / "prep_M1000_r0", "test")
    auc = roc_auc_score(test.labels(), predict_split(Predictor(model), test, progress=False))
    assert round(auc, 5) == 0.77003


def test_save_load_round_trip_and_plain_dict(golden_large: Path, tmp_path: Path) -> None:
    model, _ = load_checkpoint(golden_large / "model_40M_arch" / "checkpoint.pt")
    path = tmp_path / "saved.pt"
    save_checkpoint(model, path, test_auc=0.72)
    again, metadata = load_checkpoint(path)
    for key, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], tensor), key
    assert metadata["test_auc"] == pytest.approx(0.72)
    # what upstream's backend does: a plain torch.load and the "state_dict" entry
    plain = torch.load(path, weights_only=False)
    assert isinstance(plain, dict) and list(plain)[:4] == [
        "nepochs",
        "nbatches",
        "nbatches_test",
        "state_dict",
    ]
    assert isinstance(plain["test_acc"], np.float64)
    upstream_like = DLRM(infer_arch(plain["state_dict"]))
    upstream_like.load_state_dict(plain["state_dict"])
    with pytest.raises(CheckpointError, match="exists"):
        save_checkpoint(model, path)  # never overwritten without asking
    save_checkpoint(model, path, overwrite=True)


def test_bare_state_dict_loads(golden: Path, tmp_path: Path) -> None:
    state, _ = load_state_dict(golden / "model_tiny" / "checkpoint.pt")
    torch.save({k: v.clone() for k, v in state.items()}, tmp_path / "bare.pt")
    model, metadata = load_checkpoint(tmp_path / "bare.pt")
    assert metadata == {} and model.arch.embedding_dim == 16


class _Touch:
    """An object whose unpickling creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_malicious_pickle_is_refused_and_runs_nothing(golden: Path, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    state, _ = load_state_dict(golden / "model_tiny" / "checkpoint.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": dict(state), "note": _Touch(target)}, evil)
    with pytest.raises(CheckpointError, match=r"refused to load .*could run code"):
        load_checkpoint(evil)
    assert not target.exists()
    legacy_evil = tmp_path / "legacy_evil.pt"
    torch.save(
        {"state_dict": dict(state), "note": _Touch(target)}, legacy_evil, _use_new_zipfile_serialization=False
    )
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(legacy_evil)
    assert not target.exists()


def test_wrong_architecture_names_the_key_and_shapes(golden: Path, golden_large: Path) -> None:
    config = json.loads((golden_large / "model_40M_arch" / "model_config.json").read_text())
    sizes = list(config["ln_emb"])
    sizes[3] += 1
    with pytest.raises(
        CheckpointError,
        match=rf"emb_l\.3\.weight has shape \[{sizes[3] - 1}, 128\], "
        rf"the model expects \[{sizes[3]}, 128\]",
    ):
        load_checkpoint(
            golden_large / "model_40M_arch" / "checkpoint.pt", preset("tb00_40M").with_tables(sizes)
        )
    with pytest.raises(
        CheckpointError, match=r"the checkpoint lacks bot_l\.4\.bias \(shape \[128\]\) and 7 more"
    ):
        load_checkpoint(
            golden / "model_tiny" / "checkpoint.pt", preset("tb00_40M").with_tables(config["ln_emb"])
        )


def test_legacy_format_is_converted_once(golden: Path, tmp_path: Path, capsys) -> None:
    state, _metadata = load_state_dict(golden / "model_tiny" / "checkpoint.pt", mmap=False)
    legacy = tmp_path / "legacy.pt"
    torch.save(
        {"state_dict": state, "test_acc": np.float64(0.5)}, legacy, _use_new_zipfile_serialization=False
    )
    _model, meta = load_checkpoint(legacy)
    assert "old file format" in capsys.readouterr().err and meta["test_acc"] == 0.5
    assert (tmp_path / "legacy.pt.mmap.pt").exists()
    load_checkpoint(legacy)
    assert "old file format" not in capsys.readouterr().err


def test_cuda_absent_is_a_clear_error(golden: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    model, _ = load_checkpoint(golden / "model_tiny" / "checkpoint.pt")
    with pytest.raises(DlrmNbError, match="device 'cuda' was asked for but CUDA is not available"):
        Predictor(model, device="cuda")
    with pytest.raises(DlrmNbError, match="precision 'fp16' is not valid: use one of fp32, bf16, int8"):
        Predictor(model, precision="fp16")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_pass_the_mlperf_rule_against_fp32(
    golden: Path, golden_large: Path, precision: str
) -> None:
    test = open_split(golden / "prep_M1000_r0", "test")
    aucs = {}
    for name in ("fp32", precision):
        model, _ = load_checkpoint(golden_large / "model_40M_arch" / "checkpoint.pt")
        aucs[name] = roc_auc_score(
            test.labels(), predict_split(Predictor(model, precision=name), test, progress=False)
        )
    assert accuracy_rule(aucs[precision], aucs["fp32"]) == {"99%": True, "99.9%": True}
