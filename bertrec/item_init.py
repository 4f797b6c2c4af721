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


def transition_counts(windows: Sequence[np.ndarray], layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sources, targets, counts)``: each distinct pair of consecutive item indices in ``windows`` (non-items
    skipped; pairs never span two windows) and how often it occurs, sorted by source then target."""
    num_items = layout.num_items
    keys = []
    for window in windows:
        items = (window[:, layout.item_field] if window.ndim == 2 else window) - layout.item_offset
        items = items[(items >= 0) & (items < num_items)].astype(np.int64)
        if len(items) > 1:
            keys.append(items[:-1] * num_items + items[1:])
    key, counts = np.unique(np.concatenate(keys) if keys else np.zeros(0, np.int64), return_counts=True)
    return key // num_items, key % num_items, counts


def transition_factors(
    windows: Sequence[np.ndarray], layout, dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_rows, output_rows)``, each ``[num_items, dim]``, from consecutive item pairs of ``windows``."""
    num_items = layout.num_items
    rows, columns, counts = transition_counts(windows, layout)
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
