"""Streaming, vectorized parsing of raw Criteo text (``day_N``, ``train.txt``, plain or ``.gz``).

A file is read in blocks of whole lines; each block is parsed by pyarrow's CSV reader
(label and integers typed, categoricals as bytes) and the hex ids are decoded with
numpy word tricks, so no Python code runs per line. Only when a block fails to parse
does a slow diagnosis walk its lines, to name the file, line and field.
"""

from __future__ import annotations

import functools
import gzip
import io
import itertools
import os
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dlrm_nb.data.criteo import CAT_NAMES, DENSE_NAMES, FIELD_NAMES, N_CAT, N_DENSE, N_FIELDS
from dlrm_nb.exceptions import InputFileError, MalformedLineError

T = TypeVar("T")
R = TypeVar("R")
BLOCK_BYTES = 16 << 20  # text per parsed block
_ARROW_BLOCK_BYTES = 4 << 20  # pyarrow parses a block in pieces of this size, in parallel
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
MAX_HEX_DIGITS = 15  # ids stay below 2^60: non-negative as int64 (real ids have 8 digits)
_HEX_ALLOWED = f"a hex id of 1 to {MAX_HEX_DIGITS} digits, or empty"
_INT_ALLOWED = f"an integer in [{_INT32_MIN}, {_INT32_MAX}], or empty"
_LABEL_ALLOWED = "0 or 1"
_GZIP_WBITS = zlib.MAX_WBITS | 16
_INT_MAX_DIGITS = 64  # int() of a longer text is slow (and beyond 4300 digits refused): never int32
#: Longest value an error message repeats (a 20 MB field is shown by its start).
SHOWN_CHARS = 80
#: What parsing a block raises on a line it cannot take (the CSV reader's error, or ours).
_PARSE_ERRORS = (pa.ArrowInvalid, MalformedLineError, InputFileError)
_ARROW_COLUMN = re.compile(r"CSV column #(?P<column>\d+)")


def shown(value: str | bytes | bytearray, limit: int = SHOWN_CHARS) -> str:
    """``value`` as an error message repeats it: at most ``limit`` characters, then "…"."""
    if isinstance(value, (bytes, bytearray)):
        cut = len(value) > limit
        text = bytes(value[: limit + 1]).decode("utf-8", "replace")
    else:
        cut, text = len(value) > limit, value
    return text[:limit] + "…" if cut or len(text) > limit else text


@dataclass
class ParsedBlock:
    """One block of raw lines, parsed. N = lines kept from the block.

    ``labels`` int32 [N]; ``dense`` int32 [N, 13] (raw, negatives kept);
    ``cats`` uint64 [26, N] (hex ids, not hashed; one contiguous row per feature);
    ``first_line`` 1-based line number
    of the block's first line in its file; ``n_lines`` lines read (kept or skipped);
    ``malformed`` lines skipped as malformed (only with ``skip_malformed``).
    """

    labels: np.ndarray
    dense: np.ndarray
    cats: np.ndarray
    first_line: int
    n_lines: int
    malformed: int = 0
    kept_mask: np.ndarray | None = None  # bool [n_lines]: which read lines parsed, when some were skipped


# ----------------------------------------------------------------------------- reading


def open_raw(path: str | os.PathLike) -> io.BufferedIOBase:
    """Open a raw text file for binary reading, decompressing ``.gz`` transparently."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"raw input {path} does not exist")
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_line_blocks(
    path: str | os.PathLike,
    *,
    byte_offset: int = 0,
    first_line: int = 1,
    max_lines: int | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[tuple[int, int, bytearray]]:
    """Yield ``(first_line, n_lines, block)`` with ``block`` made of whole lines, each ending
    in ``\\n`` (one is added to a last line that lacks it).

    Starts at ``byte_offset`` (of the decompressed stream; for ``.gz`` it is reached by
    decompressing) and stops after ``max_lines`` lines when given. A truncated ``.gz``
    raises :class:`InputFileError` naming the file.
    """
    path = os.fspath(path)
    lines_left = max_lines
    line_no = first_line
    with open_raw(path) as f:
        try:
            _seek(f, byte_offset)
            while lines_left is None or lines_left > 0:
                block = bytearray(block_bytes)
                size = f.readinto(block)
                if not size:
                    break
                del block[size:]
                if not block.endswith(b"\n"):
                    block += f.readline()  # finish the last line (in place: no copy of the block)
                    if not block.endswith(b"\n"):
                        block += b"\n"  # the file's last line had no newline
                block, n_lines, lines_left, done = _limit_lines(block, lines_left)
                if block:
                    yield line_no, n_lines, block
                    line_no += n_lines
                if done:
                    return
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise _corrupt_error(path, byte_offset, first_line, exc) from exc


def _corrupt_error(path: str, byte_offset: int, first_line: int, exc: BaseException) -> InputFileError:
    """The error of a compressed file that cannot be read to its end, naming its last good line."""
    last = first_line - 1 + _lines_before_error(path, byte_offset)
    where = (
        f"its last complete line is line {last:,}"
        if last >= first_line
        else "not one complete line could be read"
        if first_line == 1
        else f"not one complete line could be read after line {first_line - 1:,}"
    )
    return InputFileError(
        f"{path} is truncated or corrupt ({shown(str(exc), 200)}): {where}; download or decompress it again"
    )


def _lines_before_error(path: str, byte_offset: int) -> int:
    """Complete lines from ``byte_offset`` (of the decompressed stream) that decompress before
    the stream fails (error path only)."""
    lines, skip = 0, byte_offset
    for piece in _inflated(path):
        if skip >= len(piece):
            skip -= len(piece)
            continue
        lines += piece.count(b"\n", skip)
        skip = 0
    return lines


def _inflated(path: str) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file, piece by piece, up to where it ends or fails."""
    with open(path, "rb") as raw:
        inflate = zlib.decompressobj(_GZIP_WBITS)
        pending = b""
        while True:
            pending = pending or raw.read(1 << 16)
            if not pending:
                return
            try:
                yield inflate.decompress(pending, 1 << 20)
            except zlib.error:
                return
            if inflate.eof:  # a member ends; another may follow
                pending, inflate = inflate.unused_data, zlib.decompressobj(_GZIP_WBITS)
            else:
                pending = inflate.unconsumed_tail


def _seek(f: io.BufferedIOBase, offset: int) -> None:
    if offset <= 0:
        return
    if isinstance(f, gzip.GzipFile):
        while offset > 0:  # gzip seeks forward by decompressing anyway
            chunk = f.read(min(offset, BLOCK_BYTES))
            if not chunk:
                return
            offset -= len(chunk)
    else:
        f.seek(offset)


def _limit_lines(block: bytearray, lines_left: int | None) -> tuple[bytearray, int, int | None, bool]:
    """Cut ``block`` to at most ``lines_left`` lines; return it, its line count, the lines
    still wanted after it and whether the limit is reached."""
    n = block.count(b"\n")
    if lines_left is None:
        return block, n, None, False
    if n < lines_left:
        return block, n, lines_left - n, False
    end = -1
    for _ in range(lines_left):
        end = block.index(b"\n", end + 1)
    return block[: end + 1], lines_left, 0, True


def count_lines(path: str | os.PathLike, *, boundaries: list[int] | None = None) -> tuple[int, list[int]]:
    """Count the lines of a raw file; return ``(lines, byte_offsets)``.

    ``byte_offsets[k]`` is the offset (in the decompressed stream) where line
    ``boundaries[k]`` (0-based) starts, for each requested boundary.
    """
    wanted = sorted(boundaries or [])
    offsets: list[int] = []
    total = 0
    pos = 0
    for _, n, block in read_line_blocks(path):
        while len(offsets) < len(wanted) and wanted[len(offsets)] < total + n:
            k = wanted[len(offsets)] - total
            end = -1
            for _ in range(k):
                end = block.index(b"\n", end + 1)
            offsets.append(pos + end + 1)
        total += n
        pos += len(block)
    while len(offsets) < len(wanted):
        offsets.append(pos)
    return total, offsets


# ----------------------------------------------------------------------------- parsing

_COLUMN_TYPES = {
    FIELD_NAMES[0]: pa.int64(),
    **{name: pa.int32() for name in DENSE_NAMES},  # beyond int32 fails to convert: diagnosed
    **{name: pa.binary() for name in CAT_NAMES},
}


def _arrow_options(use_threads: bool) -> tuple:
    read = pacsv.ReadOptions(
        column_names=list(FIELD_NAMES), block_size=_ARROW_BLOCK_BYTES, use_threads=use_threads
    )
    parse = pacsv.ParseOptions(
        delimiter="\t",
        quote_char=False,
        double_quote=False,
        escape_char=False,
        newlines_in_values=False,
        ignore_empty_lines=True,  # an empty line then shows as a missing row, diagnosed below
    )
    convert = pacsv.ConvertOptions(
        column_types=_COLUMN_TYPES,
        strings_can_be_null=False,
        null_values=[""],
        true_values=[],
        false_values=[],
    )
    return read, parse, convert


def parse_block(
    path: str,
    first_line: int,
    block: bytes | bytearray,
    *,
    n_lines: int | None = None,
    skip_malformed: bool = False,
    use_threads: bool = True,
) -> ParsedBlock:
    """Parse a block of whole raw lines into arrays (see :class:`ParsedBlock`).

    A malformed line raises :class:`MalformedLineError` (file, line, field), or is
    skipped and counted when ``skip_malformed``.
    """
    if n_lines is None:
        n_lines = block.count(b"\n")
    try:
        table = pacsv.read_csv(pa.BufferReader(block), *_arrow_options(use_threads))
        return _convert(path, first_line, n_lines, table)
    except _PARSE_ERRORS as exc:
        lines = _split_lines(block)
        bad = _find_malformed_lines(path, first_line, block) or _find_rejected_lines(
            path, first_line, lines, list(range(len(lines)))
        )
        if not bad:
            raise InputFileError(
                f"{path}: lines {first_line}..{first_line + n_lines - 1} could not be parsed "
                f"({shown(str(exc), 200)})"
            ) from exc
        if not skip_malformed:
            raise bad[0][1] from None
        return _parse_without(path, first_line, lines, n_lines, [k for k, _ in bad], use_threads)


def _split_lines(block: bytes | bytearray) -> list[bytes | bytearray]:
    """The lines of a block, each with its ``\\n`` (split at ``\\n`` only, as lines are counted)."""
    parts = block.split(b"\n")
    return [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _parse_without(
    path: str,
    first_line: int,
    lines: Sequence[bytes | bytearray],
    n_lines: int,
    bad: list[int],
    use_threads: bool,
) -> ParsedBlock:
    keep = np.ones(n_lines, dtype=bool)
    keep[bad] = False
    try:
        parsed = _parse_kept(path, first_line, lines, keep, use_threads)
    except _PARSE_ERRORS:
        # lines the slow check passed but the CSV reader rejects: find them and skip them too
        more = _find_rejected_lines(path, first_line, lines, np.flatnonzero(keep).tolist())
        if not more:
            raise
        keep[[k for k, _ in more]] = False
        bad = bad + [k for k, _ in more]
        parsed = _parse_kept(path, first_line, lines, keep, use_threads)
    parsed.n_lines, parsed.malformed, parsed.kept_mask = n_lines, len(bad), keep
    return parsed


def _parse_kept(
    path: str, first_line: int, lines: Sequence[bytes | bytearray], keep: np.ndarray, use_threads: bool
) -> ParsedBlock:
    """Parse the lines of a block that ``keep`` marks (bool [n_lines])."""
    good = b"".join(line for line, ok in zip(lines, keep, strict=True) if ok)
    if good:
        table = pacsv.read_csv(pa.BufferReader(good), *_arrow_options(use_threads))
        parsed = _convert(path, first_line, int(keep.sum()), table)
    else:
        parsed = ParsedBlock(
            labels=np.zeros(0, np.int32),
            dense=np.zeros((0, N_DENSE), np.int32),
            cats=np.zeros((N_CAT, 0), np.uint64),
            first_line=first_line,
            n_lines=0,
        )
    return parsed


def _convert(path: str, first_line: int, n_lines: int, table: pa.Table) -> ParsedBlock:
    if table.num_rows != n_lines:
        raise InputFileError(f"{path}: lines {first_line}..{first_line + n_lines - 1} hold an empty line")
    labels = _int_column(table.column(0))
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        row = int(np.flatnonzero((labels < 0) | (labels > 1))[0])
        raise MalformedLineError(path, first_line + row, "label", str(labels[row]), _LABEL_ALLOWED)
    dense = np.empty((n_lines, N_DENSE), dtype=np.int32)
    for j in range(N_DENSE):
        dense[:, j] = _int_column(table.column(1 + j))
    cats = np.empty((N_CAT, n_lines), dtype=np.uint64)
    for j in range(N_CAT):
        column = table.column(1 + N_DENSE + j)
        offset = 0
        for chunk in column.chunks:
            cats[j, offset : offset + len(chunk)] = decode_hex(chunk, path, first_line + offset, CAT_NAMES[j])
            offset += len(chunk)
    return ParsedBlock(
        labels=labels.astype(np.int32), dense=dense, cats=cats, first_line=first_line, n_lines=n_lines
    )


def _int_column(column: pa.ChunkedArray) -> np.ndarray:
    """int64 [N] with empty (null) fields as 0."""
    if column.null_count:
        column = pc.fill_null(column, 0)
    return column.to_numpy()


_LOW_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_ONES = np.uint64(0x0101010101010101)
_HIGH_BITS = np.uint64(0x8080808080808080)
_CASE_BITS = np.uint64(0x2020202020202020)
_LETTER_BITS = np.uint64(0x6060606060606060)
_DIGIT_BASE = np.uint64(0x3030303030303030)
_ALPHA_TEST = np.uint64(0x7676767676767676)


def _decode_hex8(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode 8 hex characters packed in each little-endian uint64; return ``(values, valid)``.

    values: uint64 [N] (< 2^32); valid: bool [N], False where a character is not hex.
    """
    u64 = np.uint64
    digits = (words & _LOW_NIBBLES) + ((words >> u64(6)) & _ONES) * u64(9)
    # validity: re-encode each digit as lowercase hex and compare with the input folded to lowercase
    is_alpha = ((digits + _ALPHA_TEST) >> u64(7)) & _ONES
    expected = digits + _DIGIT_BASE + is_alpha * u64(0x27)
    printable = (((words & _LETTER_BITS) + _LETTER_BITS) & _HIGH_BITS) == _HIGH_BITS
    valid = ((words | _CASE_BITS) == expected) & printable
    pairs = ((digits << u64(4)) | (digits >> u64(8))) & u64(0x00FF00FF00FF00FF)
    quads = ((pairs << u64(8)) | (pairs >> u64(16))) & u64(0x0000FFFF0000FFFF)
    values = ((quads << u64(16)) | (quads >> u64(32))) & u64(0xFFFFFFFF)
    return values, valid


_HEX_DIGIT = np.full(256, 255, dtype=np.uint8)
for _k, _c in enumerate(b"0123456789abcdef"):
    _HEX_DIGIT[_c] = _k
for _k, _c in enumerate(b"ABCDEF"):
    _HEX_DIGIT[_c] = 10 + _k
_HEX_DIGIT.setflags(write=False)
del _k, _c


def decode_hex(chunk: pa.Array, path: str, first_line: int, field: str) -> np.ndarray:
    """Decode a binary column of hex ids into uint64 [N]; empty fields become 0.

    The common case (every non-empty id has 8 digits) runs as eight uint64 word
    operations; other lengths (1 to MAX_HEX_DIGITS digits) take a slower vectorized path.
    """
    n = len(chunk)
    buffers = chunk.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=n + 1, offset=chunk.offset * 4)
    lengths = np.diff(offsets)
    start, end = int(offsets[0]), int(offsets[-1])
    text = np.frombuffer(buffers[2], dtype=np.uint8, count=end - start, offset=start) if end > start else None
    out = np.zeros(n, dtype=np.uint64)
    if text is None:
        return out
    present = lengths > 0
    if np.all(lengths[present] == 8):
        values, valid = _decode_hex8(text.view("<u8"))
        if not valid.all():
            bad = int(np.flatnonzero(present)[np.flatnonzero(~valid)[0]])
            _raise_hex(path, first_line, field, text, offsets, bad)
        out[present] = values
        return out
    return _decode_hex_any(text, offsets, lengths, path, first_line, field)


def _decode_hex_any(
    text: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, path: str, first_line: int, field: str
) -> np.ndarray:
    n = len(lengths)
    too_long = np.flatnonzero(lengths > MAX_HEX_DIGITS)
    if too_long.size:
        _raise_hex(path, first_line, field, text, offsets, int(too_long[0]))
    digits = _HEX_DIGIT[text]
    if (digits == 255).any():
        char = int(np.flatnonzero(digits == 255)[0]) + int(offsets[0])
        row = int(np.searchsorted(offsets, char, side="right") - 1)
        _raise_hex(path, first_line, field, text, offsets, row)
    present = np.flatnonzero(lengths > 0)
    starts = (offsets[:-1] - offsets[0])[present]
    lens = lengths[present]
    position = np.arange(text.size) - np.repeat(starts, lens)
    shift = ((np.repeat(lens, lens) - 1 - position) * 4).astype(np.uint64)
    out = np.zeros(n, dtype=np.uint64)
    out[present] = np.add.reduceat(digits.astype(np.uint64) << shift, starts)
    return out


def _raise_hex(
    path: str, first_line: int, field: str, text: np.ndarray, offsets: np.ndarray, row: int
) -> None:
    base = int(offsets[0])
    value = shown(bytes(text[int(offsets[row]) - base : int(offsets[row + 1]) - base]))
    raise MalformedLineError(path, first_line + row, field, value, _HEX_ALLOWED)


# ----------------------------------------------------------------------------- diagnosis (error path only)


def _find_malformed_lines(
    path: str, first_line: int, block: bytes | bytearray
) -> list[tuple[int, MalformedLineError]]:
    """Walk the lines of a block that failed to parse; return ``(index, error)`` per bad line."""
    bad = []
    raws: Sequence[bytes | bytearray] = block.split(b"\n")
    for k, raw in enumerate(raws[: block.count(b"\n")]):
        error = check_line(path, first_line + k, raw)
        if error is not None:
            bad.append((k, error))
    return bad


def check_line(path: str, line_no: int, raw: bytes | bytearray) -> MalformedLineError | None:
    """The slow, obvious check of one raw line (without its newline); None when it is valid."""
    fields: Sequence[bytes | bytearray] = raw.split(b"\t")
    if len(fields) != N_FIELDS:
        return MalformedLineError(
            path, line_no, "(line)", f"{len(fields)} fields", f"exactly {N_FIELDS} tab-separated fields"
        )
    label = fields[0]
    if label not in (b"", b"0", b"1"):
        return MalformedLineError(path, line_no, "label", shown(label), _LABEL_ALLOWED)
    for name, field in zip(DENSE_NAMES, fields[1 : 1 + N_DENSE], strict=True):
        if field and not _is_int32(field):
            return MalformedLineError(path, line_no, name, shown(field), _INT_ALLOWED)
    for name, field in zip(CAT_NAMES, fields[1 + N_DENSE :], strict=True):
        if field and (len(field) > MAX_HEX_DIGITS or any(_HEX_DIGIT[c] == 255 for c in field)):
            return MalformedLineError(path, line_no, name, shown(field), _HEX_ALLOWED)
    return None


def _is_int32(field: bytes | bytearray) -> bool:
    """An optional "-" then ASCII digits, within int32 (no "+": the CSV reader refuses it)."""
    digits = field[1:] if field[:1] == b"-" else field
    return 0 < len(digits) <= _INT_MAX_DIGITS and digits.isdigit() and _INT32_MIN <= int(field) <= _INT32_MAX


def _find_rejected_lines(
    path: str, first_line: int, lines: Sequence[bytes | bytearray], indices: list[int]
) -> list[tuple[int, MalformedLineError]]:
    """The lines (of ``indices``) the CSV reader rejects though :func:`check_line` passes them,
    found by bisection (error path only); ``(index, error)`` per line, in order."""
    bad: list[tuple[int, MalformedLineError]] = []

    def visit(part: list[int]) -> None:
        try:
            table = pacsv.read_csv(pa.BufferReader(b"".join(lines[k] for k in part)), *_arrow_options(False))
            _convert(path, first_line, len(part), table)
        except _PARSE_ERRORS as exc:
            if len(part) == 1:
                bad.append((part[0], _rejected_line(path, first_line + part[0], lines[part[0]], exc)))
            else:
                visit(part[: len(part) // 2])
                visit(part[len(part) // 2 :])

    if indices:
        visit(indices)
    return bad


def _rejected_line(path: str, line_no: int, raw: bytes | bytearray, exc: Exception) -> MalformedLineError:
    """The error of one line the CSV reader rejected with ``exc`` (naming its column when it can)."""
    fields = raw.rstrip(b"\n").split(b"\t")
    match = _ARROW_COLUMN.search(str(exc))
    column = int(match["column"]) if match else -1
    if 0 <= column < min(len(fields), N_FIELDS):
        allowed = _LABEL_ALLOWED if column == 0 else _INT_ALLOWED if column <= N_DENSE else _HEX_ALLOWED
        return MalformedLineError(path, line_no, FIELD_NAMES[column], shown(fields[column]), allowed)
    return MalformedLineError(
        path, line_no, "(line)", shown(raw.rstrip(b"\n")), f"a line the CSV reader accepts: {shown(str(exc))}"
    )


# ----------------------------------------------------------------------------- streaming


def block_parsers(
    path: str | os.PathLike,
    *,
    byte_offset: int = 0,
    first_line: int = 1,
    max_lines: int | None = None,
    skip_malformed: bool = False,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[Callable[[], ParsedBlock]]:
    """The file's blocks, read in order, each as a call that parses it (to run in any thread)."""
    path = os.fspath(path)
    blocks = read_line_blocks(
        path, byte_offset=byte_offset, first_line=first_line, max_lines=max_lines, block_bytes=block_bytes
    )
    for first, n_lines, block in blocks:
        yield functools.partial(
            parse_block, path, first, block, n_lines=n_lines, skip_malformed=skip_malformed, use_threads=False
        )


def iter_parsed_blocks(path: str | os.PathLike, *, workers: int = 0, **where: Any) -> Iterator[ParsedBlock]:
    """Parse a raw file block by block, in order (``where``: the arguments of :func:`block_parsers`).

    With ``workers`` > 0, blocks are parsed by that many background threads, a few blocks
    ahead, while the caller works on the current one (pyarrow and numpy release the GIL);
    otherwise lazily in the caller's thread.
    """
    parsers = block_parsers(path, **where)
    if workers <= 0:
        return (parse() for parse in parsers)
    return ordered_map(call, parsers, workers=workers)


@overload
def call(function: Callable[[], R]) -> R: ...
@overload
def call(function: None) -> None: ...
@overload
def call(function: Callable[[], R] | None) -> R | None: ...
def call(function: Callable[[], R] | None) -> R | None:
    """``function()``, passing None through (an end marker in a stream of parse calls)."""
    return None if function is None else function()


def ordered_map(function: Callable[[T], R], items: Iterable[T], *, workers: int = 2) -> Iterator[R]:
    """``map(function, items)`` computed by ``workers`` threads, up to ``workers + 1`` items
    ahead of the caller, results in order. ``items`` is consumed in the caller's thread."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dlrm-nb-parse") as pool:
        pending: deque[Future] = deque()
        source = iter(items)
        for item in itertools.islice(source, workers + 1):
            pending.append(pool.submit(function, item))
        while pending:
            result = pending.popleft().result()
            for item in itertools.islice(source, 1):
                pending.append(pool.submit(function, item))
            yield result
