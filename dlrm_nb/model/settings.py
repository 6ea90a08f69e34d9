"""What the model layer is asked to do, as plain data and rules: precisions, devices, training.

Nothing here imports torch, so the command line and the notebook-parameter checks can use the
same constants and rules as the engine without paying for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlrm_nb.exceptions import InvalidValueError

PRECISIONS = ("fp32", "bf16", "int8")
#: How the embedding tables are stored for inference, apart from the MLP precision.
TABLE_PRECISIONS = ("fp32", "bf16", "int8")
DEVICES = ("cpu", "cuda")
#: When converted tables come from the converted-model cache: ``auto`` for tables converted on the
#: CPU (bf16 or int8) whose fp32 size is above the engine's pack limit (1 GiB; the published
#: checkpoints), ``on`` for any tables on the CPU (fp32 ones are then packed on disk too), ``off``
#: never (tables are converted in memory at every load).
TABLE_CACHE_MODES = ("auto", "on", "off")
#: Pairs per forward when scoring a whole split.
SCORE_BATCH_PAIRS = 16384


def check_device_name(device: str) -> str:
    """``device`` when it names a kind this package runs on (``cpu``, ``cuda``, ``cuda:N``)."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise InvalidValueError("device", device, "use cpu, cuda or cuda:N")
    return device


def check_precision(precision: str, device: str) -> str:
    """``precision`` when it is one of :data:`PRECISIONS` and runs on ``device`` (int8: CPU only)."""
    if precision not in PRECISIONS:
        raise InvalidValueError("precision", precision, f"use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and check_device_name(device) != "cpu":
        raise InvalidValueError(
            "precision",
            precision,
            "int8 (dynamic quantization) runs on the CPU only; use fp32 or bf16 on cuda",
        )
    return precision


def check_table_precision(table_precision: str) -> str:
    """``table_precision`` when it is one of :data:`TABLE_PRECISIONS` (any device)."""
    if table_precision not in TABLE_PRECISIONS:
        raise InvalidValueError(
            "table_precision", table_precision, f"use one of {', '.join(TABLE_PRECISIONS)}"
        )
    return table_precision


def check_table_cache(mode: str) -> str:
    """``mode`` when it is one of :data:`TABLE_CACHE_MODES`."""
    if mode not in TABLE_CACHE_MODES:
        raise InvalidValueError("table_cache", mode, f"use one of {', '.join(TABLE_CACHE_MODES)}")
    return mode


@dataclass(frozen=True)
class PredictorSettings:
    """How a checkpoint is run: what every command and notebook step passes to
    :func:`dlrm_nb.model.inference.load_predictor`."""

    precision: str = "fp32"
    table_precision: str = "fp32"
    device: str = "cpu"
    compile: bool = False
    table_cache: str = "auto"  # one of TABLE_CACHE_MODES
    table_cache_dir: str = ""  # empty: beside the checkpoint


@dataclass(frozen=True)
class TrainSettings:
    """How the demo model is trained; the same settings and seed give the same checkpoint."""

    arch: str = "tb00_40M"
    seed: int = 0
    epochs: float = 1.0  # passes over the training split
    batch_size: int = 512
    learning_rate: float = 2e-3
    max_minutes: float = 10.0  # safety stop; a run cut short by it is not reproducible
    max_train_rows: int | None = None  # use only the first rows of the training split
