"""``precision: auto``: time each precision on this machine and keep the fastest that passes MLPerf.

At load, every candidate precision (fp32, bf16, int8 on the CPU; fp32, bf16 on CUDA) scores the
first pairs of the test split and is timed at one batch size; its AUC is compared with fp32's
under MLPerf's 99.9% rule (DLRM-99.9: at least 99.9% of the reference AUC, here fp32's on the
same pairs). The fastest passing candidate wins; fp32 always passes against itself, so there is
always a winner. Machines differ: AMX or AVX512-BF16 make bf16 several times faster than fp32,
while on AVX2 alone bf16 is slower, so the choice is measured, never assumed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from dlrm_nb.model.settings import PredictorSettings

#: The precision value that asks for the measured choice.
AUTO = "auto"
#: The MLPerf target a candidate must pass against fp32.
AUTO_TARGET = "99.9%"
#: Defaults: pairs scored per candidate, the batch it is timed at, and the seconds of timing.
AUTO_PAIRS = 20_000
AUTO_BATCH = 1024
AUTO_SECONDS = 1.0


@dataclass(frozen=True)
class Candidate:
    """One precision as measured: pairs/s at the timing batch, AUC on the scored pairs, and
    whether that AUC passes the 99.9% rule against fp32's."""

    precision: str
    pairs_per_s: float
    auc: float | None
    passes: bool


@dataclass(frozen=True)
class AutoChoice:
    """The chosen precision and every candidate's figures (recorded in ``model.json``)."""

    chosen: str
    candidates: tuple[Candidate, ...]
    table_precision: str
    pairs: int
    batch_size: int
    target: str = AUTO_TARGET

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "candidates": [asdict(c) for c in self.candidates]}


def check_precision_or_auto(precision: str, device: str) -> str:
    """``precision`` when it is ``auto`` or a precision that runs on ``device``."""
    from dlrm_nb.exceptions import InvalidValueError
    from dlrm_nb.model.settings import check_precision

    if precision == AUTO:
        return precision
    try:
        return check_precision(precision, device)
    except InvalidValueError as exc:
        raise InvalidValueError(
            exc.name, exc.value, f"{exc.allowed} (or {AUTO}: the fastest that passes)"
        ) from None


def candidate_precisions(device: str) -> tuple[str, ...]:
    """The precisions worth trying on ``device``: int8 (dynamic quantization) is CPU-only."""
    from dlrm_nb.exceptions import InvalidValueError
    from dlrm_nb.model.settings import PRECISIONS, check_precision

    names = []
    for precision in PRECISIONS:
        try:
            names.append(check_precision(precision, device))
        except InvalidValueError:
            continue
    return tuple(names)


def choose_precision(
    checkpoint: str | os.PathLike,
    split: Any,
    settings: PredictorSettings,
    *,
    pairs: int = AUTO_PAIRS,
    batch_size: int = AUTO_BATCH,
    seconds: float = AUTO_SECONDS,
    candidates: Sequence[str] | None = None,
) -> AutoChoice:
    """Measure each candidate precision and pick the fastest that passes 99.9% of fp32's AUC.

    Each candidate is ``checkpoint`` loaded by :func:`~dlrm_nb.model.inference.load_predictor`
    with ``settings`` at that precision (the same table precision, device, compile flag and
    converted-model cache for all; ``settings.precision`` itself is not used). ``split`` is the
    test split (a :class:`~dlrm_nb.data.dataset.CriteoSplit`); its first ``pairs`` pairs are
    scored. fp32 is always measured first: it is the reference.
    """
    from dlrm_nb.model.inference import accuracy_rule, forward_rates, load_predictor, score_split

    names = list(candidates or candidate_precisions(settings.device))
    names = ["fp32", *[name for name in names if name != "fp32"]]
    count = min(pairs, len(split))
    measured: list[Candidate] = []
    reference_auc: float | None = None
    for precision in names:
        predictor = load_predictor(checkpoint, replace(settings, precision=precision), progress=False)
        auc = score_split(predictor, split, count=count, progress=False).auc
        if precision == "fp32":
            reference_auc = auc
        rate = forward_rates(predictor, [batch_size], seconds, split)[batch_size]
        # fp32 is the reference; without an AUC (one class in the scored pairs) only fp32 passes
        passes = precision == "fp32" or (
            auc is not None and reference_auc is not None and accuracy_rule(auc, reference_auc)[AUTO_TARGET]
        )
        measured.append(Candidate(precision, round(rate, 1), auc, passes))
        del predictor
    chosen = max((c for c in measured if c.passes), key=lambda c: c.pairs_per_s)
    return AutoChoice(chosen.precision, tuple(measured), settings.table_precision, count, batch_size)
