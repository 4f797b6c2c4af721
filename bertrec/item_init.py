"""Start item embeddings from the log's item-to-item transitions instead of noise.

A first-order transition table ("Markov") is a strong ranking on many logs, and a small transformer spends most
of its first epochs rediscovering it through low-rank item embeddings. Factorising the table directly gives
that rank-``hidden`` approximation up front: with positive pointwise mutual information ``P`` of consecutive
items, ``P ~ U S V^T`` (randomised SVD of the sparse matrix), input rows ``U sqrt(S)`` and output rows
``V sqrt(S)`` make the freshly built model score ``<input(x), output(y)> ~ PMI(x, y)`` at the last event, as
factorised Markov models (FPMC) do. Training then starts from there and adds what Markov cannot see.

This needs an output layer of its own (``--tie_embeddings false``): one matrix cannot hold both sides of a
directed table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bertrec.pair_counts import PairCounter
from bertrec.repeats import every_nth

# the factorised table is a starting point: past this many transitions a spread sample of windows gives it (a
# 50M-event log's full table took 1 GB and a minute to count; logs under ~5M events are counted whole)
INIT_MAX_PAIRS = 5_000_000


def transition_counts(
    windows: Sequence[np.ndarray], layout, max_pairs: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sources, targets, counts)``: each distinct pair of consecutive item indices in ``windows`` (non-items
    skipped; pairs never span two windows) and how often it occurs, sorted by source then target.

    ``max_pairs``: count only evenly spaced windows holding about that many pairs (for a table that is only a
    starting point, on logs of tens of millions of events); ``None`` counts every window."""
    counter = PairCounter(layout.num_items)
    for window in _spread(windows, layout, max_pairs):
        items = _items(window, layout)
        counter.add(items[:-1], items[1:])
    return counter.result()


def _items(window: np.ndarray, layout) -> np.ndarray:
    items = (window[:, layout.item_field] if window.ndim == 2 else window) - layout.item_offset
    return items[(items >= 0) & (items < layout.num_items)].astype(np.int64)


def _spread(windows: Sequence[np.ndarray], layout, max_pairs: int | None):
    """Every window, or every k-th one where the windows hold more than ``max_pairs`` pairs (estimated from the
    lengths of up to a thousand of them), read by index so that memory-mapped windows are never all loaded."""
    step = 1
    if max_pairs is not None and len(windows):
        probe = [len(_items(windows[i], layout)) - 1 for i in range(0, len(windows), max(1, len(windows) // 1000))]
        pairs = len(windows) * max(float(np.mean(probe)), 1.0)
        step = max(1, int(np.ceil(pairs / max_pairs)))
    return every_nth(windows, step)


def transition_factors(
    windows: Sequence[np.ndarray], layout, dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_rows, output_rows)``, each ``[num_items, dim]``, from consecutive item pairs of ``windows``."""
    num_items = layout.num_items
    rows, columns, counts = transition_counts(windows, layout, max_pairs=INIT_MAX_PAIRS)
    if not len(counts):
        return torch.zeros(num_items, dim), torch.zeros(num_items, dim)
    out_degree = np.bincount(rows, weights=counts, minlength=num_items)
    in_degree = np.bincount(columns, weights=counts, minlength=num_items)
    pmi = np.log(counts * counts.sum() / (out_degree[rows] * in_degree[columns]))
    keep = pmi > 0
    matrix = torch.sparse_coo_tensor(
        torch.as_tensor(np.stack([rows[keep], columns[keep]])),
        torch.as_tensor(pmi[keep], dtype=torch.float32),
        (num_items, num_items),
        check_invariants=True,
    ).coalesce()
    torch.manual_seed(seed)
    u, s, v = torch.svd_lowrank(matrix, q=min(dim, num_items))
    root = s.sqrt()
    input_rows, output_rows = torch.zeros(num_items, dim), torch.zeros(num_items, dim)
    input_rows[:, : len(s)], output_rows[:, : len(s)] = u * root, v * root
    return input_rows, output_rows


@torch.no_grad()
def init_from_transitions(model, windows: Sequence[np.ndarray], layout, seed: int = 0) -> None:
    """Write the transition factors into the item rows of the input embedding and the (untied) output layer.

    Both sides are scaled to the input embedding's own initial spread, so the item dominates its position's sum
    no more than a random init would let it."""
    embedding, output = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    if embedding.data_ptr() == output.data_ptr():
        raise ValueError(
            "item embeddings from transitions need an untied output layer: pass --tie_embeddings false, or "
            "--item_init random"
        )
    rows = slice(layout.item_offset, layout.item_offset + layout.num_items)
    input_rows, output_rows = transition_factors(windows, layout, embedding.shape[1], seed)
    scale = float(embedding[rows].std()) / max(float(input_rows.std()), 1e-12)
    embedding[rows] = (input_rows * scale).to(embedding.dtype)
    output[rows] = (output_rows * float(output[rows].std()) / max(float(output_rows.std()), 1e-12)).to(output.dtype)
