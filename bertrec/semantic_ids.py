"""Semantic IDs: each item written as a few codebook tokens derived from its content vector.

Residual k-means (as in TIGER/LC-Rec's RQ codes, with k-means in place of the learned RQ-VAE): level 1
clusters the item vectors into ``codebook_size`` centroids, level 2 clusters what is left after subtracting
each item's level-1 centroid, and so on. Items with similar content share their first codes, so a model that
composes an item from its codes (``bertrec.item_content``) moves related items together, and a vocabulary of
``levels x codebook_size`` tokens covers any catalogue size.

Two items can still get the same codes. A last level then tells them apart (0, 1, 2, ... within each group of
equal codes, as TIGER does); the number of items that needed it is returned, so collisions are counted, never
silent. The codes become ordinary attribute columns ``sid1 .. sidL`` (+ ``sid_dedup``) of the item feature table.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch


def kmeans(vectors: torch.Tensor, k: int, iterations: int = 25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain Lloyd's k-means with k-means++ seeding: (assignments [n], centroids [k, d]); empty clusters are
    re-seeded at the point farthest from its centroid."""
    n = vectors.shape[0]
    k = min(k, n)
    generator = torch.Generator().manual_seed(seed)
    centroids = vectors[torch.randint(n, (1,), generator=generator)]
    for _ in range(1, k):  # k-means++: each new centroid drawn in proportion to its squared distance
        distance = torch.cdist(vectors, centroids).min(dim=1).values ** 2
        weights = distance / distance.sum() if distance.sum() > 0 else torch.full((n,), 1.0 / n)
        centroids = torch.cat([centroids, vectors[torch.multinomial(weights, 1, generator=generator)]])
    for _ in range(iterations):
        distances = torch.cdist(vectors, centroids)
        assignment = distances.argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, vectors)
        sizes = torch.bincount(assignment, minlength=k)
        moved = torch.where(sizes[:, None] > 0, sums / sizes.clamp(min=1)[:, None], centroids)
        for empty in torch.nonzero(sizes == 0).flatten().tolist():
            far = distances.gather(1, assignment[:, None]).squeeze(1).argmax()
            moved[empty] = vectors[far]
        if torch.allclose(moved, centroids):
            break
        centroids = moved
    return torch.cdist(vectors, centroids).argmin(dim=1), centroids


def residual_codes(vectors: np.ndarray, levels: int = 3, codebook_size: int = 64, seed: int = 0) -> np.ndarray:
    """``[items, levels]`` codes by residual k-means of ``vectors [items, dim]``."""
    residual = torch.as_tensor(vectors, dtype=torch.float32)
    codes = []
    for level in range(levels):
        assignment, centroids = kmeans(residual, codebook_size, seed=seed + level)
        codes.append(assignment)
        residual = residual - centroids[assignment]
    return torch.stack(codes, dim=1).numpy()


def dedup_level(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """A last code telling apart items with equal codes (their order within the group), and how many items
    share their codes with an earlier one."""
    frame = pl.DataFrame({f"c{i}": codes[:, i] for i in range(codes.shape[1])})
    order = frame.with_row_index("row").with_columns(
        pl.int_range(pl.len()).over([f"c{i}" for i in range(codes.shape[1])]).alias("dup")
    )
    dup = order.sort("row")["dup"].to_numpy()
    return dup, int((dup > 0).sum())


def semantic_id_table(
    item_ids: list[str], vectors: np.ndarray, levels: int = 3, codebook_size: int = 64, seed: int = 0
) -> tuple[pl.DataFrame, dict]:
    """Item feature columns ``sid1 .. sidL`` and ``sid_dedup`` (``List[String]``, one value each) for
    ``bertrec.item_content``, and a report: levels, codebook size, distinct code tuples, collisions."""
    codes = residual_codes(vectors, levels, codebook_size, seed)
    dup, collided = dedup_level(codes)
    columns = {f"sid{level + 1}": [[str(c)] for c in codes[:, level]] for level in range(codes.shape[1])}
    columns["sid_dedup"] = [[str(d)] for d in dup]
    table = pl.DataFrame({"item_id": item_ids, **columns}, schema_overrides={"item_id": pl.String})
    distinct = len({tuple(row) for row in codes.tolist()})
    report = {
        "levels": levels,
        "codebook_size": codebook_size,
        "items": len(item_ids),
        "distinct_codes": distinct,
        "items_sharing_codes": collided,
        "max_dedup": int(dup.max()) if len(dup) else 0,
    }
    return table, report
