"""ROC AUC over labelled pairs, as MLPerf computes it (scikit-learn), where it is defined."""

from __future__ import annotations

import numpy as np


def auc_or_none(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """``roc_auc_score(labels, scores)`` for labels [N] (0/1) and scores [N], or None when the
    labels hold a single class (or none at all) and the AUC is undefined."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return None
    from sklearn.metrics import roc_auc_score  # 2 s to import: only when an AUC is computed

    return float(roc_auc_score(labels, scores))
