"""DLRM with dot interaction, as the MLPerf reference defines it, in small typed modules.

Shape letters: B batch, F = 26 categorical features, D embedding dimension, N = F + 1
interacting vectors (the bottom MLP's output and the F embeddings), P = N (N - 1) / 2 = 351
pairs of the strictly lower triangle.

Parameter names match upstream's ``DLRM_Net`` (``emb_l.{j}.weight``, ``bot_l.{k}.weight``,
``top_l.{k}.weight``, with activations at odd ``k``), so upstream checkpoints load as they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from dlrm_nb.data.criteo import N_CAT, N_DENSE
from dlrm_nb.exceptions import DlrmNbError


@dataclass(frozen=True)
class DlrmArch:
    """The architecture: embedding dimension, MLP widths and rows per embedding table."""

    embedding_dim: int
    bottom: tuple[int, ...]  # widths, starting with 13 and ending with embedding_dim
    top: tuple[int, ...]  # widths, starting with D + P and ending with 1
    table_sizes: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.bottom[0] != N_DENSE or self.bottom[-1] != self.embedding_dim:
            raise DlrmNbError(
                f"bottom MLP {list(self.bottom)} must start at {N_DENSE} and end at the embedding "
                f"dimension {self.embedding_dim}"
            )
        interactions = N_CAT + 1
        expected_top_input = self.embedding_dim + interactions * (interactions - 1) // 2
        if self.top[0] != expected_top_input or self.top[-1] != 1:
            raise DlrmNbError(
                f"top MLP {list(self.top)} must start at {expected_top_input} (D + 351 pairs) and end at 1"
            )
        if self.table_sizes and len(self.table_sizes) != N_CAT:
            raise DlrmNbError(f"{len(self.table_sizes)} table sizes given, {N_CAT} needed")

    def with_tables(self, table_sizes: Sequence[int]) -> DlrmArch:
        return DlrmArch(self.embedding_dim, self.bottom, self.top, tuple(int(n) for n in table_sizes))

    @property
    def flops_per_pair(self) -> int:
        """Multiply-adds x 2 of one forward per user-item pair (MLPs and interaction)."""
        macs = sum(a * b for a, b in itertools.pairwise(self.bottom))
        macs += sum(a * b for a, b in itertools.pairwise(self.top))
        macs += (N_CAT + 1) ** 2 * self.embedding_dim
        return 2 * macs


#: Published MLPerf architectures (table sizes come from the data or the checkpoint).
PRESETS: dict[str, DlrmArch] = {
    "tb00_40M": DlrmArch(128, (13, 512, 256, 128), (479, 1024, 1024, 512, 256, 1)),
    "tb0875_10M": DlrmArch(64, (13, 512, 256, 64), (415, 512, 512, 256, 1)),
    "kaggle": DlrmArch(16, (13, 512, 256, 64, 16), (367, 512, 256, 1)),
}

#: Rows per table of the published checkpoints (DESIGN.md §4).
PUBLISHED_TABLE_SIZES = {
    "tb00_40M": (39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10, 2208,
                 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36),
    "tb0875_10M": (9980333, 36084, 17217, 7378, 20134, 3, 7112, 1442, 61, 9758201, 1333352, 313829, 10, 2208,
                   11156, 122, 4, 970, 14, 9994222, 7267859, 9946608, 415421, 12420, 101, 36),
}  # fmt: skip


def preset(name: str) -> DlrmArch:
    if name not in PRESETS:
        raise DlrmNbError(f"architecture {name!r} is not one of {', '.join(PRESETS)}")
    return PRESETS[name]


class MLP(nn.Sequential):
    """Linear + ReLU layers (upstream's layout: Linear at even indices); the last activation
    is ReLU (bottom MLP) or Sigmoid (top MLP). [B, widths[0]] -> [B, widths[-1]]."""

    def __init__(self, widths: Sequence[int], last: str, device: torch.device | str | None = None) -> None:
        layers: list[nn.Module] = []
        for k, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(fan_in, fan_out, device=device))
            is_last = k == len(widths) - 2
            layers.append(nn.Sigmoid() if is_last and last == "sigmoid" else nn.ReLU())
        super().__init__(*layers)


class Embeddings(nn.ModuleList):
    """F embedding tables; ids int64 [B, F] -> vectors [B, F, D] (one id per bag, as upstream)."""

    def __init__(
        self,
        table_sizes: Sequence[int],
        dim: int,
        device: torch.device | str | None = None,
        sparse: bool = False,
    ) -> None:
        super().__init__(nn.Embedding(rows, dim, device=device, sparse=sparse) for rows in table_sizes)

    def __iter__(self) -> Iterator[nn.Embedding]:  # every member is a table
        return cast(Iterator[nn.Embedding], super().__iter__())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.stack([table(ids[:, j]) for j, table in enumerate(self)], dim=1)


class DotInteraction(nn.Module):
    """Pairwise dot products of the N vectors, strictly lower triangle in row-major order.

    [B, N, D] -> [B, P]; P = N (N - 1) / 2 (351 for N = 27).
    """

    flat_index: torch.Tensor  # a buffer (not saved in the state dict)

    def __init__(self, vectors: int = N_CAT + 1) -> None:
        super().__init__()
        rows, cols = torch.tril_indices(vectors, vectors, offset=-1)
        self.register_buffer("flat_index", rows * vectors + cols, persistent=False)
        self.vectors = vectors

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        products = torch.bmm(stacked, stacked.transpose(1, 2))  # [B, N, N]
        return products.flatten(1)[:, self.flat_index]


class DLRM(nn.Module):
    """Dense [B, 13] (already log(x + 1)) and ids [B, 26] -> click probability [B]."""

    def __init__(
        self, arch: DlrmArch, device: torch.device | str | None = None, sparse: bool = False
    ) -> None:
        super().__init__()
        if not arch.table_sizes:
            raise DlrmNbError("the architecture has no table sizes: take them from the data or a checkpoint")
        self.arch = arch
        self.bot_l = MLP(arch.bottom, last="relu", device=device)
        self.emb_l = Embeddings(arch.table_sizes, arch.embedding_dim, device=device, sparse=sparse)
        self.interaction = DotInteraction()
        self.top_l = MLP(arch.top, last="sigmoid", device=device)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        bottom = self.bot_l(dense)  # [B, D]
        embedded = self.emb_l(ids).to(bottom.dtype)  # [B, F, D]
        stacked = torch.cat([bottom.unsqueeze(1), embedded], dim=1)  # [B, N, D]
        pairs = self.interaction(stacked)  # [B, P]
        return self.top_l(torch.cat([bottom, pairs], dim=1)).squeeze(1)  # [B]
