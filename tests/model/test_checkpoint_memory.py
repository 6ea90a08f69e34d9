"""A checkpoint larger than memory could hold twice loads memory-mapped: peak RSS barely moves."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROWS = 4_200_000  # one 4.2M x 128 fp32 table: 2.15 GB

WRITE = textwrap.dedent(
    """
    import sys, torch
    from dlrm_nb.model.checkpoint import load_state_dict, save_checkpoint
    from dlrm_nb.model.dlrm import DLRM, preset
    sizes = [{rows}] + [10] * 25
    model = DLRM(preset("tb00_40M").with_tables(sizes), device="meta")
    model.to_empty(device="cpu")
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    save_checkpoint(model, sys.argv[1])
    """
)

LOAD = textwrap.dedent(
    """
    import resource, sys, torch
    from dlrm_nb.model.checkpoint import load_checkpoint
    from dlrm_nb.model.inference import Predictor
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model, _ = load_checkpoint(sys.argv[1])
    predictor = Predictor(model)
    out = predictor.predict(torch.zeros(64, 13), torch.arange(64 * 26).reshape(64, 26) % 10)
    assert out.shape == (64,)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
    """
)


@pytest.mark.slow
def test_big_checkpoint_loads_memory_mapped(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    subprocess.run([sys.executable, "-c", WRITE.format(rows=ROWS), str(path)], check=True)
    size = path.stat().st_size
    assert size > 2e9
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(path)], check=True, capture_output=True, text=True
    )
    grown = int(result.stdout.strip().splitlines()[-1])
    assert grown < 0.3 * size, f"peak RSS grew by {grown / 1e9:.2f} GB for a {size / 1e9:.2f} GB checkpoint"
