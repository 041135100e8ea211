"""The weighted graph of a grid's passable cells, for Dijkstra (``scipy.sparse.csgraph``).

One builder serves the env's geodesic fields (``envs.navigation.NavGrid``: 16-connected,
move lengths) and the planner's paths (``planners.path.PathPlanner``: 8-connected, lengths
times the mean cell cost). A move joins two passable cells when every cell its segment
crosses is passable too, so no path cuts the corner of a blocked cell.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix

# Moves, each listed once (the graph holds both directions): (d_row, d_col, cells the segment
# passes through besides its ends, relative to the start cell).
MOVES_8 = (
    (0, 1, ()),
    (1, 0, ()),
    (1, 1, ((0, 1), (1, 0))),
    (1, -1, ((0, -1), (1, 0))),
)
# 16-connectivity: the 8 above plus the knight moves.
MOVES_16 = MOVES_8 + (
    (1, 2, ((0, 1), (1, 1))),
    (2, 1, ((1, 0), (1, 1))),
    (1, -2, ((0, -1), (1, -1))),
    (2, -1, ((1, 0), (1, -1))),
)


def shift(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """out[r, c] = mask[r + dr, c + dc], False outside the grid."""
    out = np.zeros_like(mask)
    rows, cols = mask.shape
    r0, r1 = max(0, -dr), min(rows, rows - dr)
    c0, c1 = max(0, -dc), min(cols, cols - dc)
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = mask[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
    return out


def grid_graph(passable: np.ndarray, moves=MOVES_16, cell_size: float = 1.0,
               cost: np.ndarray | None = None) -> tuple[csr_matrix, np.ndarray]:
    """The graph of the passable cells of a (rows, cols) grid, and its node numbering.

    Returns ``(graph, node)``: ``node[r, c]`` is the node of a passable cell (row-major order)
    and -1 elsewhere; ``graph`` is the (n, n) sparse matrix of edge weights with both directions
    of every move. An edge's weight is its length, ``hypot(d_row, d_col) * cell_size``, or with a
    per-cell ``cost`` grid ``length * (cost[a] + cost[b]) / 2``.
    """
    passable = np.asarray(passable, bool)
    node = -np.ones(passable.shape, np.int64)
    node[passable] = np.arange(int(passable.sum()))
    src, dst, wts = [], [], []
    for dr, dc, via in moves:
        ok = passable & shift(passable, dr, dc)
        for vr, vc in via:
            ok &= shift(passable, vr, vc)
        r, c = np.nonzero(ok)
        a, b = node[r, c], node[r + dr, c + dc]
        length = math.hypot(dr, dc) * cell_size
        w = np.full(len(r), length) if cost is None else length * 0.5 * (cost[r, c] + cost[r + dr, c + dc])
        src += [a, b]
        dst += [b, a]
        wts += [w, w]
    n = int(passable.sum())
    graph = csr_matrix((np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))), shape=(n, n))
    return graph, node


__all__ = ["MOVES_8", "MOVES_16", "grid_graph", "shift"]
