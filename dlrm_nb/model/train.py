"""Training the demo model: a published DLRM architecture on prepared (synthetic) data.

Nothing can be downloaded here, so the workbook trains its own checkpoint in upstream's
format: the ``tb00_40M`` MLPs and embedding dimension, tables sized from the prepared data's
counts, trained on the training split (``*_processed_train.bin``, made by ``prepare
--write-train``) and evaluated on the test split.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlrm_nb.data.criteo import DATASETS, table_sizes
from dlrm_nb.data.dataset import CriteoSplit, open_split, read_counts
from dlrm_nb.data.manifest import MANIFEST_NAME
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.model.checkpoint import save_checkpoint
from dlrm_nb.model.dlrm import DLRM, preset
from dlrm_nb.model.inference import Predictor, score_split
from dlrm_nb.model.settings import TrainSettings
from dlrm_nb.progress import Progress, progress_bar


def _data_tables(data_dir: Path) -> list[int]:
    counts = read_counts(data_dir)
    manifest = data_dir / MANIFEST_NAME
    max_ind_range = json.loads(manifest.read_text())["settings"]["max_ind_range"] if manifest.exists() else -1
    return table_sizes(counts, max_ind_range)


def _training_split(data_dir: Path) -> CriteoSplit:
    for layout in DATASETS.values():
        path = data_dir / layout.bin_name("train")
        if path.exists():
            return CriteoSplit.from_bin(path)
    raise DlrmNbError(
        f"{data_dir} has no training split (*_processed_train.bin): prepare it with --write-train"
    )


def _init_like_upstream(model: DLRM, generator: torch.Generator) -> None:
    """Upstream's initialization: Linear weights N(0, sqrt(2 / (fan_in + fan_out))), biases
    N(0, sqrt(1 / fan_out)); embeddings U(-sqrt(1 / rows), sqrt(1 / rows))."""
    with torch.no_grad():
        for layer in [*model.bot_l, *model.top_l]:
            if isinstance(layer, nn.Linear):
                fan_out, fan_in = layer.weight.shape
                layer.weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
                layer.bias.normal_(0.0, math.sqrt(1.0 / fan_out), generator=generator)
        for table in model.emb_l:
            bound = math.sqrt(1.0 / table.weight.shape[0])
            table.weight.uniform_(-bound, bound, generator=generator)


def train_demo(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    settings: TrainSettings | None = None,
    *,
    progress: Progress = True,
) -> dict[str, Any]:
    """Train, evaluate on the test split and save an upstream-format checkpoint at ``out``.

    Returns a summary: steps, seconds, pairs/s, training loss, test AUC.
    """
    settings = settings or TrainSettings()
    data_dir, out = Path(data_dir), Path(out)
    if out.exists():
        raise DlrmNbError(f"{out} exists; choose a new file name (checkpoints are never overwritten)")
    arch = preset(settings.arch).with_tables(_data_tables(data_dir))
    train = _training_split(data_dir)
    rows = len(train) if settings.max_train_rows is None else min(len(train), settings.max_train_rows)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = DLRM(arch, sparse=True)
    _init_like_upstream(model, generator)
    dense_params = [p for name, p in model.named_parameters() if not name.startswith("emb_l.")]
    optimizers = [
        torch.optim.Adam(dense_params, lr=settings.learning_rate),
        torch.optim.SparseAdam(list(model.emb_l.parameters()), lr=settings.learning_rate),
    ]
    loss_fn = nn.BCELoss()
    order = np.random.RandomState(settings.seed)
    steps = math.ceil(settings.epochs * rows / settings.batch_size)
    started = time.perf_counter()
    deadline = started + 60 * settings.max_minutes
    losses: list[float] = []
    batches = _batches(order, rows, settings.batch_size)
    model.train()
    with progress_bar(progress, total=steps, desc="train", unit="step") as bar:
        for step in range(steps):
            batch = train.batch(next(batches))
            prediction = model(torch.from_numpy(batch.dense), torch.from_numpy(batch.cats))
            loss = loss_fn(prediction, torch.from_numpy(batch.labels))
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-200:]):.4f}")
            if time.perf_counter() > deadline:
                bar.write(
                    f"stopped at step {step + 1} of {steps}: max_minutes {settings.max_minutes} reached"
                )
                break
    seconds = time.perf_counter() - started
    model.eval()
    for table in model.emb_l:
        table.sparse = False
    test = open_split(data_dir, "test")
    score = score_split(Predictor(model), test, progress=progress)
    test_auc = score.auc
    accuracy = float(np.mean((score.predictions > 0.5) == (score.labels > 0.5)))
    done_steps = len(losses)
    summary = {
        "arch": settings.arch,
        "table_sizes": list(arch.table_sizes),
        "steps": done_steps,
        "complete": done_steps == steps,
        "seconds": round(seconds, 2),
        "pairs_per_s": round(done_steps * settings.batch_size / seconds, 1),
        "train_loss": float(np.mean(losses[-200:])),
        "test_auc": test_auc,
        "test_accuracy": accuracy,
        "settings": settings.__dict__,
    }
    save_checkpoint(
        model,
        out,
        nepochs=math.ceil(settings.epochs),
        nbatches=done_steps,
        iter=done_steps,
        train_loss=summary["train_loss"],
        test_acc=accuracy,
        test_auc=np.float64(test_auc),
    )
    return summary


def _batches(order: np.random.RandomState, rows: int, batch_size: int):
    """Row indices of each batch: epochs of a fresh permutation, batches never span two epochs."""
    while True:
        permutation = order.permutation(rows)
        for start in range(0, rows - batch_size + 1, batch_size):
            yield np.sort(permutation[start : start + batch_size])
