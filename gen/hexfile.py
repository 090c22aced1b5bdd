"""Weight images of the NVM macros as ``$readmemh`` files (the ``INIT_FILE`` of ``nvm_array_macro``).

Format (docs/verilog.md): a comment header of ``//`` lines, then exactly ``ROWS * COLS`` lines, one word per
cell in address order ``row * COLS + col`` (row = word line of the tile, col = its column), each the cell's
weight code as a ``WEIGHT_BITS``-bit two's-complement number in ``ceil(WEIGHT_BITS / 4)`` lower-case hex
digits. Cells beyond the edge of the weight matrix hold 0, as the programming sequence writes them.
"""

from __future__ import annotations

import numpy as np

from nvmlstm.golden.nvm import Tile

__all__ = ["tile_codes", "format_hex", "parse_hex"]


def tile_codes(weights: np.ndarray, tile: Tile, rows: int, cols: int) -> np.ndarray:
    """The ``rows x cols`` cell codes of ``tile`` of a weight matrix (shape: columns x rows, as stored in
    `golden.model`); cell (r, c) holds ``weights[col_start + c, row_start + r]``, 0 beyond the matrix edge."""
    w = np.asarray(weights, dtype=np.int64)
    out = np.zeros((rows, cols), dtype=np.int64)
    block = w[tile.col_start : tile.col_stop, tile.row_start : tile.row_stop].T
    out[: block.shape[0], : block.shape[1]] = block
    return out


def format_hex(codes: np.ndarray, weight_bits: int, header: list[str]) -> str:
    """``$readmemh`` text of a ``rows x cols`` code array (row-major = macro address order)."""
    digits = -(-weight_bits // 4)
    mask = (1 << weight_bits) - 1
    lines = [f"// {h}" for h in header]
    lines += [format(int(v) & mask, f"0{digits}x") for v in np.asarray(codes).reshape(-1)]
    return "\n".join(lines) + "\n"


def parse_hex(text: str, weight_bits: int, rows: int, cols: int) -> np.ndarray:
    """Inverse of `format_hex` (for tests and tools): the signed ``rows x cols`` codes.

    Raises ``ValueError`` naming the line if a word is malformed or the count is not ``rows * cols``.
    """
    half, full = 1 << (weight_bits - 1), 1 << weight_bits
    vals = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        try:
            v = int(line, 16)
        except ValueError:
            raise ValueError(f"line {n}: {line!r} is not a hex word") from None
        if v >= full:
            raise ValueError(f"line {n}: {line!r} does not fit in {weight_bits} bits")
        vals.append(v - full if v >= half else v)
    if len(vals) != rows * cols:
        raise ValueError(f"expected {rows * cols} words ({rows} x {cols} cells), found {len(vals)}")
    return np.array(vals, dtype=np.int64).reshape(rows, cols)
