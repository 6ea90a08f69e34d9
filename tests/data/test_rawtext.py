"""The raw reader: block boundaries, gzip, missing final newline, line limits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dlrm_nb.data.rawtext import count_lines, iter_parsed_blocks, read_line_blocks


def parse_all(path: Path, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    blocks = list(iter_parsed_blocks(path, **kwargs))
    return (
        np.concatenate([b.labels for b in blocks]),
        np.concatenate([b.dense for b in blocks]),
        np.concatenate([b.cats for b in blocks], axis=1),
        [b.first_line for b in blocks],
    )


@pytest.mark.parametrize("block_bytes", [1, 1000, 4096, 1 << 24])
def test_block_size_does_not_change_the_result(golden: Path, block_bytes: int) -> None:
    reference = parse_all(golden / "raw" / "day_23")
    labels, dense, cats, firsts = parse_all(golden / "raw" / "day_23", block_bytes=block_bytes)
    np.testing.assert_array_equal(labels, reference[0])
    np.testing.assert_array_equal(dense, reference[1])
    np.testing.assert_array_equal(cats, reference[2])
    assert firsts[0] == 1 and firsts == sorted(firsts)


def test_gzip_and_missing_final_newline(golden: Path, tmp_path: Path) -> None:
    text = (golden / "raw" / "day_23").read_bytes()
    (tmp_path / "plain").write_bytes(text[:-1])  # no newline after the last line
    (tmp_path / "day.gz").write_bytes(gzip.compress(text))
    reference = parse_all(golden / "raw" / "day_23")
    for name in ("plain", "day.gz"):
        labels, dense, cats, _ = parse_all(tmp_path / name, block_bytes=5000)
        np.testing.assert_array_equal(labels, reference[0])
        np.testing.assert_array_equal(cats, reference[2])
        np.testing.assert_array_equal(dense, reference[1])


def test_line_ranges_and_offsets(golden: Path) -> None:
    path = golden / "kaggle" / "train.txt"
    total, offsets = count_lines(path, boundaries=[0, 150, 300, 1049])
    assert total == 1050
    lines = path.read_bytes().splitlines(keepends=True)
    assert offsets == [0, sum(map(len, lines[:150])), sum(map(len, lines[:300])), sum(map(len, lines[:1049]))]
    blocks = list(
        read_line_blocks(path, byte_offset=offsets[1], first_line=151, max_lines=150, block_bytes=7000)
    )
    assert sum(n for _, n, _ in blocks) == 150
    assert b"".join(block for _, _, block in blocks) == b"".join(lines[150:300])
    assert blocks[0][0] == 151


def test_ids_of_other_lengths_take_the_general_path(tmp_path: Path) -> None:
    line = "1\t5\t\t\t7\t0\t1\t2\t3\t4\t5\t6\t7\t8\t" + "\t".join(["8a4d2f1c"] * 26) + "\n"
    odd = line.replace("8a4d2f1c", "1F", 1).replace("8a4d2f1c", "18a4d2f1c", 1)
    path = tmp_path / "day"
    path.write_text(line + odd)
    cats = parse_all(path)[2]
    assert cats[0].tolist() == [0x8A4D2F1C, 0x1F] and cats[1].tolist() == [0x8A4D2F1C, 0x18A4D2F1C]
