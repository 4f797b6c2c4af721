"""Full-ranking metrics from target ranks.

Ranks are pessimistic: every other item scoring *at least* as high as the target ranks before it, so ties count
against the model and a constant scorer gets nothing. A target that cannot be ranked (an item never seen in
training, or one excluded as already seen) has rank ``inf`` and is a miss at every K, even K larger than the
catalogue. Metrics are computed from ranks rather than top-k lists, which lose ties.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

METRIC_NAMES = ("hr", "ndcg", "mrr", "recall")


def leave_out(scores: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """``scores`` with -inf at the (rows, columns) pairs (seen items, in ranking and in the training softmax).
    ``in_place`` only where nothing else reads the scores: for training logits, when the operation that made them
    does not read its own output in backward (a matrix product or a sum does not; a log-softmax does)."""
    minus_inf = torch.tensor(float("-inf"), device=scores.device)
    return scores.index_put_((rows, columns), minus_inf) if in_place else scores.index_put((rows, columns), minus_inf)


def pessimistic_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's target among ``scores [batch, items]``; ``inf`` where it cannot be ranked.

    ``targets`` holds item indices, ``-1`` for an unknown item. A target scoring ``-inf`` (masked out) or NaN
    is unrankable.
    """
    known = targets >= 0
    safe = targets.clamp(min=0)
    target_scores = scores.gather(1, safe[:, None])
    ranks = (scores >= target_scores).sum(dim=1).to(torch.float64)  # includes the target itself
    rankable = known & torch.isfinite(target_scores[:, 0])
    return torch.where(rankable, ranks, torch.full_like(ranks, float("inf")))


def metrics_from_ranks(ranks: np.ndarray | torch.Tensor | Iterable[float], ks: Iterable[int] = (10,)) -> dict:
    """HR@K, NDCG@K, MRR@K and Recall@K (one target per row, so Recall@K equals HR@K) averaged over rows."""
    ranks = np.asarray(ranks.cpu() if isinstance(ranks, torch.Tensor) else list(ranks), dtype=np.float64)
    if ranks.ndim != 1 or ranks.size == 0:
        raise ValueError("metrics need a non-empty 1-D array of ranks")
    if np.any(ranks < 1):
        raise ValueError(f"ranks are 1-based; got a rank of {ranks.min()}")
    result: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"K must be at least 1, got {k}")
        hit = ranks <= k
        result[f"hr@{k}"] = float(hit.mean())
        result[f"ndcg@{k}"] = float(per_row_ndcg(ranks, k).mean())
        with np.errstate(divide="ignore"):
            result[f"mrr@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
        result[f"recall@{k}"] = result[f"hr@{k}"]
    result["users"] = int(ranks.size)
    return result


def per_row_ndcg(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@K of each row (one target per row): ``1 / log2(rank + 1)`` for a target ranked in the top K, else 0;
    for paired comparisons of two rankings of the same rows."""
    ranks = np.asarray(ranks, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
