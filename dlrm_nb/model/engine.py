"""The inference engine: a DLRM laid out for fast prediction (packed tables, chosen precisions).

Shape letters as in :mod:`dlrm_nb.model.dlrm`: B batch, F = 26 categorical features, D embedding
dimension, N = F + 1 interacting vectors, P = N (N - 1) / 2 = 351 pairs; R rows of all tables.

:class:`DLRM` stays the reference and the training model; :class:`InferenceEngine` is built from
a loaded one and never changes it. Two precisions are chosen apart:

- *table precision* (``fp32``, ``bf16``, ``int8``): how the embedding rows are stored. ``int8``
  is row-wise symmetric: int8 values [R, D] and one fp32 scale per row (max |row| / 127),
  dequantized after the gather (on the CPU by one fused gather-and-dequantize kernel, see
  :func:`fuse_rows`). At real size the tables are the memory and the gathers the traffic.
- *precision* of the MLPs and the interaction (``fp32``, ``bf16``, ``int8``): ``bf16`` runs
  weights and activations in bfloat16; ``int8`` is torch.ao dynamic quantization of every
  Linear (activations fp32, CPU only).

Packing copies the tables into one [R, D] tensor, so that a lookup is one gather. Copying is fine
for small and medium tables. On the CPU, fp32 tables larger than :data:`PACK_LIMIT_BYTES` (a
memory-mapped published checkpoint: 12.6 or 96 GB) are looked up where they lie instead, one
gather per table, so that memory holds them once (bf16 and int8 tables are conversions, hence
copies, at half and a quarter of the size). At that size the converted tables come from the
converted-model cache (:mod:`dlrm_nb.model.table_cache`): made once, memory-mapped after, and
taken by :meth:`PackedTables.from_packed` as they are, no copy.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dlrm_nb.data.criteo import N_CAT
from dlrm_nb.exceptions import DlrmNbError
from dlrm_nb.model.dlrm import DLRM, DlrmArch
from dlrm_nb.model.settings import check_precision, check_table_precision

#: Storage dtype of each table precision.
TABLE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}
#: fp32 tables larger than this are not copied into a packed tensor (see the module docstring).
PACK_LIMIT_BYTES = 1 << 30
#: Rows converted at a time when packing, so that conversion temporaries stay small.
_CHUNK_ROWS = 1 << 18


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise symmetric int8: [R, D] float -> values int8 [R, D] and scales float32 [R].

    ``scale = max |row| / 127`` and ``values = round(row / scale)``, so ``values * scale`` is
    within ``scale / 2`` of every element; an all-zero row gets scale 0 and values 0.
    """
    weight = weight.float()
    scales = weight.abs().amax(dim=1) / 127.0
    values = torch.round(weight / scales.clamp_min(torch.finfo(torch.float32).tiny).unsqueeze(1))
    return values.clamp_(-127, 127).to(torch.int8), scales


def fuse_rows(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 rows in FBGEMM's 8-bit row-wise layout: uint8 [R, D + 8].

    Each row holds its D values + 128 as bytes, then the fp32 scale and the fp32 bias
    ``-128 * scale``, so that ``byte * scale + bias`` is ``value * scale`` again. The layout
    torch's fused CPU kernel (``quantized::embedding_bag_byte_rowwise_offsets``) gathers and
    dequantizes in one pass: about 5x faster here than a gather followed by the dequantization.
    """
    rows, dim = values.shape
    scales = scales.float().contiguous()
    fused = torch.empty(rows, dim + 8, dtype=torch.uint8, device=values.device)
    fused[:, :dim] = values.view(torch.uint8) ^ 128  # two's complement: value + 128 as a byte
    fused[:, dim : dim + 4] = scales.view(torch.uint8).view(rows, 4)
    fused[:, dim + 4 :] = (scales * -128).view(torch.uint8).view(rows, 4)
    return fused


@dataclass(frozen=True)
class PackedLayout:
    """Where and how F tables of ``sizes`` rows [n_j, D] lie once packed in one precision."""

    sizes: tuple[int, ...]
    dim: int
    precision: str
    fused: bool  # int8 rows in :func:`fuse_rows`' layout (uint8 [R, D + 8]), no separate scales

    @property
    def rows(self) -> int:
        return sum(self.sizes)

    @property
    def weights_shape(self) -> tuple[int, int]:
        return (self.rows, self.dim + 8) if self.fused else (self.rows, self.dim)

    @property
    def weights_dtype(self) -> torch.dtype:
        return torch.uint8 if self.fused else TABLE_DTYPES[self.precision]

    @property
    def has_scales(self) -> bool:
        return self.precision == "int8" and not self.fused

    def offsets(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """int64 [F]: the first row of each table."""
        return torch.tensor([0, *self.sizes[:-1]], dtype=torch.int64, device=device).cumsum(0)


def packed_layout(sizes: Sequence[int], dim: int, precision: str, fused: bool) -> PackedLayout:
    """The layout of tables ``sizes`` x ``dim`` packed in table precision ``precision``."""
    check_table_precision(precision)
    return PackedLayout(tuple(int(n) for n in sizes), int(dim), precision, precision == "int8" and fused)


def fill_packed(
    tables: Sequence[torch.Tensor],
    weights: torch.Tensor,
    scales: torch.Tensor | None,
    precision: str,
    on_rows: Callable[[int], object] | None = None,
) -> None:
    """Convert F tables [n_j, D] into ``weights`` (and ``scales``) laid out as :func:`packed_layout`
    says, a chunk of rows at a time (conversion temporaries stay small); ``on_rows(n)`` after each
    chunk. ``weights`` may be any writable tensor, e.g. a memory-mapped file's."""
    start = 0
    for table in tables:
        for chunk in table.detach().split(_CHUNK_ROWS):
            end = start + len(chunk)
            if precision != "int8":
                weights[start:end].copy_(chunk)
            elif scales is None:
                weights[start:end].copy_(fuse_rows(*quantize_rows(chunk)))
            else:
                values, chunk_scales = quantize_rows(chunk)
                weights[start:end].copy_(values)
                scales[start:end].copy_(chunk_scales)
            if on_rows is not None:
                on_rows(end - start)
            start = end


class PackedTables(nn.Module):
    """All F tables in one tensor; ids int64 [B, F] -> vectors [B, F, D] in ``out_dtype``.

    ``offsets`` int64 [F]: the first row of each table. A lookup is one gather of
    ``ids + offsets``. ``weights`` and ``scales`` in one of these layouts:

    - float32 or bfloat16 [R, D], no scales;
    - int8 [R, D] and float32 scales [R] (row-wise symmetric), dequantized after the gather;
      any device;
    - uint8 [R, D + 8], no scales: the same int8 rows in :func:`fuse_rows`' layout, gathered
      and dequantized by one fused kernel; CPU only (what :meth:`pack` makes on the CPU).
    """

    weights: torch.Tensor
    offsets: torch.Tensor
    scales: torch.Tensor | None

    def __init__(
        self,
        weights: torch.Tensor,
        scales: torch.Tensor | None,
        offsets: torch.Tensor,
        out_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if weights.dim() != 2 or offsets.dim() != 1 or offsets.dtype != torch.int64:
            raise DlrmNbError(
                f"packed tables need weights [R, D] and int64 offsets [F]; got weights "
                f"{list(weights.shape)} and offsets {list(offsets.shape)} {offsets.dtype}"
            )
        if weights.dtype not in (*TABLE_DTYPES.values(), torch.uint8):
            raise DlrmNbError(f"packed tables of {weights.dtype} are not supported")
        if (weights.dtype == torch.int8) != (scales is not None):
            raise DlrmNbError("int8 packed tables need one float32 scale per row; other dtypes take none")
        if scales is not None and scales.shape != (weights.shape[0],):
            raise DlrmNbError(f"scales {list(scales.shape)} do not match {weights.shape[0]} rows")
        if weights.dtype == torch.uint8 and weights.device.type != "cpu":
            raise DlrmNbError(
                "fused int8 rows (uint8 [R, D + 8]) run on the CPU only; use int8 values and scales"
            )
        self.register_buffer("weights", weights, persistent=False)
        self.register_buffer("scales", scales, persistent=False)
        self.register_buffer("offsets", offsets, persistent=False)
        self.out_dtype = out_dtype
        self.fused = weights.dtype == torch.uint8

    @classmethod
    def from_packed(
        cls,
        weights: torch.Tensor,
        scales: torch.Tensor | None,
        offsets: torch.Tensor,
        out_dtype: torch.dtype = torch.float32,
    ) -> PackedTables:
        """Tables already packed (e.g. memory-mapped from a converted-model cache), in one of
        the layouts above: taken as they are, no copy."""
        return cls(weights, scales, offsets, out_dtype)

    @classmethod
    def pack(
        cls,
        tables: Sequence[torch.Tensor],
        precision: str = "fp32",
        *,
        device: torch.device | str | None = None,
        out_dtype: torch.dtype = torch.float32,
        fused: bool | None = None,
    ) -> PackedTables:
        """Copy F tables [n_j, D] into one tensor on ``device`` in table precision ``precision``.

        int8 rows take the fused layout when ``fused`` (default: on the CPU)."""
        check_table_precision(precision)
        device = torch.device(device) if device is not None else tables[0].device
        fused = precision == "int8" and (device.type == "cpu" if fused is None else fused)
        layout = packed_layout([len(t) for t in tables], int(tables[0].shape[1]), precision, fused)
        weights = torch.empty(layout.weights_shape, dtype=layout.weights_dtype, device=device)
        scales = torch.empty(layout.rows, device=device) if layout.has_scales else None
        fill_packed(tables, weights, scales, precision)
        return cls(weights, scales, layout.offsets(device), out_dtype)

    @property
    def precision(self) -> str:
        if self.fused:
            return "int8"
        return next(name for name, dtype in TABLE_DTYPES.items() if dtype == self.weights.dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = (ids + self.offsets).flatten()  # [B F]
        if self.fused:  # one bag of one row per lookup, summed: the row itself, dequantized
            bags = torch.arange(rows.shape[0], device=rows.device)
            vectors = torch.ops.quantized.embedding_bag_byte_rowwise_offsets(
                self.weights, rows, bags, False, 0, False, None, None, False
            )  # [B F, D] float32
        else:
            vectors = self.weights.index_select(0, rows)  # [B F, D]
            if self.scales is not None:
                vectors = vectors.float() * self.scales.index_select(0, rows).unsqueeze(1)
        return vectors.to(self.out_dtype).view(ids.shape[0], ids.shape[1], -1)  # [B, F, D]


class SeparateTables(nn.Module):
    """F fp32 tables used where they lie (no copy): one gather per table; ids [B, F] -> [B, F, D]."""

    def __init__(self, tables: Sequence[torch.Tensor], out_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        for j, table in enumerate(tables):  # buffers, so that page-in and .to() see them
            self.register_buffer(f"table_{j}", table.detach(), persistent=False)
        self.count = len(tables)
        self.out_dtype = out_dtype
        self.precision = "fp32"

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        tables = [getattr(self, f"table_{j}") for j in range(self.count)]
        vectors = [table.index_select(0, ids[:, j]) for j, table in enumerate(tables)]
        return torch.stack(vectors, dim=1).to(self.out_dtype)  # [B, F, D]


def _bytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def _mlp(mlp: nn.Sequential, precision: str, device: torch.device) -> nn.Module:
    """A copy of ``mlp`` in ``precision`` on ``device`` (the model's own MLP is left as it is)."""
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            # torch.ao's dynamic quantization is deprecated in favour of torchao, and still works
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
            return quantize_dynamic(copy.deepcopy(mlp).float().cpu(), {nn.Linear}, dtype=torch.qint8)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return copy.deepcopy(mlp).to(device, dtype)


class InferenceEngine(nn.Module):
    """A DLRM for inference only: dense float32 [B, 13] and ids int64 [B, F] -> float32 [B].

    Same computation as :class:`DLRM` (dot interaction, strictly lower triangle in row-major
    order); with ``precision`` and ``table_precision`` both ``fp32`` the predictions are DLRM's.
    ``tables``: already packed tables (e.g. memory-mapped from a converted-model cache) to use
    instead of packing the model's own; their precision must be ``table_precision``.
    """

    flat_index: torch.Tensor

    def __init__(
        self,
        model: DLRM,
        *,
        precision: str = "fp32",
        table_precision: str = "fp32",
        device: torch.device | str = "cpu",
        pack_limit_bytes: int = PACK_LIMIT_BYTES,
        tables: PackedTables | None = None,
    ) -> None:
        super().__init__()
        device = torch.device(device)
        self.precision = check_precision(precision, str(device))
        self.table_precision = check_table_precision(table_precision)
        self.arch: DlrmArch = model.arch
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32  # of the activations
        self.bottom = _mlp(model.bot_l, precision, device)
        self.top = _mlp(model.top_l, precision, device)
        self.tables: PackedTables | SeparateTables
        weights = [table.weight for table in model.emb_l]
        if tables is not None:
            if tables.precision != table_precision or len(tables.weights) != sum(self.arch.table_sizes):
                raise DlrmNbError(
                    f"the packed tables ({tables.precision}, {len(tables.weights)} rows) do not match "
                    f"table precision {table_precision} and the model's {sum(self.arch.table_sizes)} rows"
                )
            self.tables = PackedTables(tables.weights, tables.scales, tables.offsets, self.dtype)
        elif table_precision == "fp32" and device.type == "cpu" and _bytes(weights) > pack_limit_bytes:
            self.tables = SeparateTables(weights, out_dtype=self.dtype)
        else:
            self.tables = PackedTables.pack(weights, table_precision, device=device, out_dtype=self.dtype)
        rows, cols = torch.tril_indices(N_CAT + 1, N_CAT + 1, offset=-1)
        self.register_buffer("flat_index", (rows * (N_CAT + 1) + cols).to(device), persistent=False)
        self.eval()

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        bottom = self.bottom(dense.to(self.dtype))  # [B, D]
        embedded = self.tables(ids)  # [B, F, D]
        stacked = torch.cat([bottom.unsqueeze(1), embedded], dim=1)  # [B, N, D]
        products = torch.bmm(stacked, stacked.transpose(1, 2))  # [B, N, N]
        # a gather with the index broadcast: 5x faster in bf16 than index_select here
        pairs = products.flatten(1).gather(1, self.flat_index.expand(len(ids), -1))  # [B, P]
        return self.top(torch.cat([bottom, pairs], dim=1)).squeeze(1).float()  # [B]
