"""Semantic IDs: each item written as a few codebook tokens derived from its content vector.

Residual k-means (as in TIGER/LC-Rec's RQ codes, with k-means in place of the learned RQ-VAE): level 1
clusters the item vectors into ``codebook_size`` centroids, level 2 clusters what is left after subtracting
each item's level-1 centroid, and so on. Items with similar content share their first codes, so a model that
composes an item from its codes (``bertrec.item_content``) moves related items together, and a vocabulary of
``levels x codebook_size`` tokens covers any catalogue size.

Two items can still get the same codes. A last level then tells them apart (0, 1, 2, ... within each group of
equal codes, as TIGER does); the number of items that needed it is returned, so collisions are counted, never
silent. The codes become ordinary attribute columns ``sid1 .. sidL`` (+ ``sid_dedup``) of the item feature table.

The text encoder and the codebooks are fit on the training catalogue only and saved beside the tokenizer
(:class:`SemanticIdEncoder`), so an item published after training gets its codes from its text alone, exactly as
a trained item would: that is what lets a semantic-ID model rank a cold item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from bertrec.text_vectors import SentenceEncoder, TfidfSvd


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


def residual_codebooks(
    vectors: np.ndarray, levels: int = 3, codebook_size: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Residual k-means of ``vectors [items, dim]``: codes ``[items, levels]`` and centroids
    ``[levels, codebook_size, dim]`` (fewer centroids than ``codebook_size`` when there are fewer items; the
    rest of the codebook is never chosen)."""
    residual = torch.as_tensor(vectors, dtype=torch.float32)
    codes, books = [], torch.full((levels, codebook_size, residual.shape[1]), float("inf"))
    for level in range(levels):
        assignment, centroids = kmeans(residual, codebook_size, seed=seed + level)
        codes.append(assignment)
        books[level, : centroids.shape[0]] = centroids
        residual = residual - centroids[assignment]
    return torch.stack(codes, dim=1).numpy(), books.numpy()


def nearest_codes(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``[items, levels]``: at each level the nearest centroid to what the levels before left over; for the
    vectors the codebooks were fit on, these are their k-means codes."""
    residual = torch.as_tensor(vectors, dtype=torch.float32)
    books = torch.as_tensor(centroids)
    codes = []
    for level in range(books.shape[0]):
        book = books[level][torch.isfinite(books[level]).all(dim=1)]
        assignment = torch.cdist(residual, book).argmin(dim=1)
        codes.append(assignment)
        residual = residual - book[assignment]
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


def code_columns(levels: int) -> list[str]:
    return [*(f"sid{level + 1}" for level in range(levels)), "sid_dedup"]


def semantic_id_table(item_ids: list[str], codes: np.ndarray, codebook_size: int) -> tuple[pl.DataFrame, dict]:
    """Item feature columns ``sid1 .. sidL`` and ``sid_dedup`` (``List[String]``, one value each) for
    ``bertrec.item_content``, and a report: levels, codebook size, distinct code tuples, collisions."""
    dup, collided = dedup_level(codes)
    table = _code_frame(item_ids, codes, dup)
    report = {
        "levels": codes.shape[1],
        "codebook_size": codebook_size,
        "items": len(item_ids),
        "distinct_codes": len({tuple(row) for row in codes.tolist()}),
        "items_sharing_codes": collided,
        "max_dedup": int(dup.max()) if len(dup) else 0,
    }
    return table, report


def _code_frame(item_ids, codes: np.ndarray, dup: np.ndarray) -> pl.DataFrame:
    """``item_id`` and the code columns (``List[String]``, one value each), as ``item_content`` reads them."""
    names = code_columns(codes.shape[1])
    columns = {name: [[str(c)] for c in codes[:, level]] for level, name in enumerate(names[:-1])}
    columns[names[-1]] = [[str(d)] for d in dup]
    return pl.DataFrame({"item_id": item_ids, **columns}, schema_overrides={"item_id": pl.String})


ENCODER_FILE = "semantic_ids.json"
NEIGHBOURS = 10  # catalogue items a new item borrows its id part from
ENCODER_ARRAYS = "semantic_ids.safetensors"


@dataclass
class SemanticIdEncoder:
    """Item text -> semantic-ID codes: the TF-IDF + SVD text encoder and the residual codebooks, both fit on
    the training catalogue's text (``text_columns`` joined by spaces). Saved beside the tokenizer; plain
    ``AutoTokenizer`` ignores its two files."""

    text_columns: list[str]
    text: TfidfSvd | SentenceEncoder
    centroids: np.ndarray  # [levels, codebook_size, dim]
    # the training catalogue's text vectors, in the tokenizer's item order (float16): a new item's nearest
    # neighbours by text, whose id parts it borrows (``item_content.add_items_from_content``)
    item_vectors: np.ndarray | None = None
    # ``--item_text_vectors``: the trained ``[dim, hidden]`` map of text vectors into item rows
    # (``item_content.ComposedItems``), with which an item added later is placed by its text
    projection: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        table: pl.DataFrame,
        text_columns: list[str],
        levels: int = 3,
        codebook_size: int = 64,
        seed: int = 0,
        text_encoder: str = "tfidf",
        text_dim: int = 64,
    ) -> tuple[SemanticIdEncoder, pl.DataFrame, dict]:
        """The encoder of ``table``'s items (``item_id`` and the text columns), their code table and report.
        ``text_encoder``: "tfidf" (built in, fit here) or a sentence-transformers model's name or path."""
        texts = _texts(table, text_columns)
        if text_encoder == "tfidf":
            text = TfidfSvd.fit(texts, dim=text_dim, seed=seed)
        else:
            text = SentenceEncoder(text_encoder)
        vectors = text.encode(texts)
        if levels:
            codes, centroids = residual_codebooks(vectors, levels, codebook_size, seed)
            codes_table, report = semantic_id_table(table["item_id"].to_list(), codes, codebook_size)
        else:  # the text encoder alone (item text vectors, ``--item_text_vectors``), no codes
            centroids = np.zeros((0, codebook_size, vectors.shape[1]), dtype=np.float32)
            codes_table = pl.DataFrame({"item_id": table["item_id"]}, schema_overrides={"item_id": pl.String})
            report = {"levels": 0}
        return cls(list(text_columns), text, centroids, vectors.astype(np.float16)), codes_table, report

    @property
    def columns(self) -> list[str]:
        """The code columns (none for an encoder fit without codes)."""
        return code_columns(self.centroids.shape[0]) if self.centroids.shape[0] else []

    def vectors(self, table: pl.DataFrame) -> np.ndarray:
        """Text vectors of ``table``'s items (its text columns), in the space the codebooks were fit in."""
        return self.text.encode(_texts(table, self.text_columns))

    def neighbours(self, vectors: np.ndarray, k: int = NEIGHBOURS, trained: int | None = None) -> torch.Tensor | None:
        """``[items, k]``: the training catalogue items (the first ``trained`` of ``item_vectors``: items added
        after training come after them) nearest to each vector by cosine (-1 for an item without text);
        ``None`` for an encoder saved without the catalogue's vectors."""
        if self.item_vectors is None or not len(self.item_vectors):
            return None
        catalogue = torch.as_tensor(self.item_vectors[:trained].astype(np.float32))
        query = torch.as_tensor(vectors, dtype=torch.float32)
        nearest = (query @ catalogue.T).topk(min(k, catalogue.shape[0]), dim=1).indices
        nearest[query.norm(dim=1) == 0] = -1
        return nearest

    def codes_for(self, item_ids: pl.Series, vectors: np.ndarray, known: np.ndarray) -> pl.DataFrame:
        """Code columns for new items from their text ``vectors`` (``vectors``). ``known`` ``[items,
        levels]``: the codes the tokenizer's items already hold, so a new item whose codes equal a known
        item's gets the next ``sid_dedup`` instead of a collision."""
        codes = nearest_codes(vectors, self.centroids)
        dup, _ = dedup_level(np.concatenate([known, codes]))  # known items first: new ones count after them
        return _code_frame(item_ids, codes, dup[len(known) :])

    def save(self, directory: str | Path) -> None:
        from safetensors.numpy import save_file

        from bertrec.atomic import atomic_write_text

        directory = Path(directory)
        arrays = {"centroids": self.centroids}
        meta = {"text_columns": self.text_columns, "dim": self.text.dim}
        if isinstance(self.text, TfidfSvd):
            arrays |= {"idf": self.text.idf, "projection": self.text.projection}
            meta["vocabulary"] = self.text.vocabulary
        else:
            meta["sentence_transformer"] = self.text.model
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        if self.projection is not None:
            arrays["text_projection"] = np.ascontiguousarray(self.projection, dtype=np.float32)
        if self.item_vectors is not None:
            arrays["item_vectors"] = np.ascontiguousarray(self.item_vectors, dtype=np.float16)
        save_file(arrays, directory / ENCODER_ARRAYS)
        atomic_write_text(directory / ENCODER_FILE, json.dumps(meta) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> SemanticIdEncoder | None:
        """The encoder saved in ``directory``, or ``None`` where there is none (a model without semantic IDs)."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        if not (directory / ENCODER_FILE).is_file():
            return None
        meta = json.loads((directory / ENCODER_FILE).read_text())
        arrays = load_file(directory / ENCODER_ARRAYS)
        if "sentence_transformer" in meta:
            text = SentenceEncoder(meta["sentence_transformer"], meta["dim"])
        else:
            text = TfidfSvd(meta["vocabulary"], arrays["idf"], arrays["projection"], meta["dim"])
        return cls(
            meta["text_columns"], text, arrays["centroids"], arrays.get("item_vectors"), arrays.get("text_projection")
        )


def _texts(table: pl.DataFrame, columns: list[str]) -> list[str]:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"semantic IDs are made from the items' text: the item table has no column(s) {missing} "
            f"(columns: {table.columns}); give each item its {columns}"
        )
    return table.select(pl.concat_str([pl.col(c).fill_null("") for c in columns], separator=" ")).to_series().to_list()
