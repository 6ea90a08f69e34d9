"""The demo model: trained on synthetic prepared data, it must reach 0.95 x the oracle AUC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from dlrm_nb.data.dataset import open_split
from dlrm_nb.data.preprocess import PrepareSettings, prepare
from dlrm_nb.data.synthetic import generate
from dlrm_nb.model.checkpoint import load_checkpoint
from dlrm_nb.model.inference import Predictor, accuracy_rule, predict_split
from dlrm_nb.model.train import TrainSettings, train_demo

pytestmark = pytest.mark.slow  # trains models: about 15 s


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    sidecar = generate(
        root / "raw", rows_per_day=4000, test_day_rows=20000, seed=5, cardinality_scale=0.05, progress=False
    )
    prepare(
        root / "raw",
        root / "prep",
        PrepareSettings(max_ind_range=1_000_000, write_train=True),
        progress=False,
    )
    return root / "prep", sidecar


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("model") / "demo.pt"
    summary = train_demo(data[0], path, TrainSettings(arch="tb00_40M", seed=1), progress=False)
    return path, summary


def test_demo_model_reaches_the_auc_bar(data, trained) -> None:
    _, sidecar = data
    path, summary = trained
    assert summary["complete"]
    assert summary["test_auc"] >= 0.95 * sidecar["oracle_auc"]["test"]
    model, metadata = load_checkpoint(path)
    assert model.arch.bottom == (13, 512, 256, 128) and model.arch.top == (479, 1024, 1024, 512, 256, 1)
    assert metadata["test_auc"] == pytest.approx(summary["test_auc"])


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_precisions_against_fp32_on_demo_data(data, trained, precision: str) -> None:
    test = open_split(data[0], "test")
    auc = {}
    for name in ("fp32", precision):
        model, _ = load_checkpoint(trained[0])
        auc[name] = roc_auc_score(
            test.labels(), predict_split(Predictor(model, precision=name), test, progress=False)
        )
    assert accuracy_rule(auc[precision], auc["fp32"]) == {"99%": True, "99.9%": True}, auc


def test_same_seed_same_checkpoint(data, tmp_path: Path) -> None:
    settings = TrainSettings(arch="kaggle", seed=3, max_train_rows=4000, batch_size=256)
    first = train_demo(data[0], tmp_path / "a.pt", settings, progress=False)
    second = train_demo(data[0], tmp_path / "b.pt", settings, progress=False)
    assert first["test_auc"] == second["test_auc"]
    a, _ = load_checkpoint(tmp_path / "a.pt")
    b, _ = load_checkpoint(tmp_path / "b.pt")
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key]), key
    other = train_demo(
        data[0],
        tmp_path / "c.pt",
        TrainSettings(arch="kaggle", seed=4, max_train_rows=4000, batch_size=256),
        progress=False,
    )
    assert other["test_auc"] != first["test_auc"]
    # the settings are recorded as given (defaults filled in) and survive a JSON round trip
    recorded = {
        "arch": "kaggle",
        "seed": 3,
        "epochs": 1.0,
        "batch_size": 256,
        "learning_rate": 2e-3,
        "max_minutes": 10.0,
        "max_train_rows": 4000,
    }
    assert first["settings"] == recorded and other["settings"] == {**recorded, "seed": 4}
    assert json.loads(json.dumps(first["settings"])) == recorded
    assert first["arch"] == "kaggle" and first["steps"] == 16 and first["complete"]  # ceil(4000 / 256) steps
