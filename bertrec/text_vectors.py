"""Item vectors from item text with nothing to download: TF-IDF over words, reduced by a truncated SVD (LSA).

Semantic IDs and content-similarity baselines need a vector per item from its title and description. A
sentence-transformers model is better where one can be installed; this encoder is the one that always works
(tests, air-gapped machines, a first try), in a few seconds for 100k items. Words are lowercased runs of
letters and digits; a word kept in fewer than ``min_df`` items says nothing shared and is dropped. Weights are
sublinear tf (1 + log tf) times smoothed idf, rows L2-normalised before and after the SVD so that a dot product
is a cosine similarity. Items with no kept word get a zero vector (counted by the caller if it cares).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass
class TfidfSvd:
    """A fitted encoder: ``vocabulary`` (kept words, sorted), their ``idf`` and the SVD's ``projection``
    ``[len(vocabulary), rank]``. ``encode`` maps any text, including text it was not fit on (a new item's
    title), into the same space, so vectors of items added after training compare with the trained ones."""

    vocabulary: list[str]
    idf: np.ndarray
    projection: np.ndarray
    dim: int

    @classmethod
    def fit(cls, texts: Sequence[str], dim: int = 64, min_df: int = 2, seed: int = 0) -> TfidfSvd:
        documents = [_words(text) for text in texts]
        document_frequency: dict[str, int] = {}
        for words in documents:
            for word in set(words):
                document_frequency[word] = document_frequency.get(word, 0) + 1
        vocabulary = sorted(w for w, df in document_frequency.items() if df >= min_df)
        df = np.array([document_frequency[w] for w in vocabulary], dtype=np.float64)
        idf = np.log((1 + len(texts)) / (1 + df)) + 1.0
        encoder = cls(vocabulary, idf.astype(np.float32), np.zeros((len(vocabulary), 0), dtype=np.float32), dim)
        rank = min(dim, len(texts), len(vocabulary))
        if rank == 0:
            return encoder
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # svd_lowrank draws a random projection
        try:
            _, _, v = torch.svd_lowrank(encoder._tfidf(documents), q=rank, niter=6)
        finally:
            torch.random.set_rng_state(generator_state)
        encoder.projection = v.numpy().astype(np.float32)
        return encoder

    @property
    def description(self) -> str:
        """What the model card says the item vectors are."""
        return f"TF-IDF + SVD (built in), {self.dim} dimensions, {len(self.vocabulary)} words"

    def _tfidf(self, documents: list[list[str]]) -> torch.Tensor:
        """Sparse ``[documents, vocabulary]`` sublinear tf-idf, rows L2-normalised."""
        index = {w: i for i, w in enumerate(self.vocabulary)}
        rows, columns, counts = [], [], []
        for row, words in enumerate(documents):
            tf: dict[int, int] = {}
            for word in words:
                column = index.get(word)
                if column is not None:
                    tf[column] = tf.get(column, 0) + 1
            rows += [row] * len(tf)
            columns += list(tf)
            counts += list(tf.values())
        values = (1.0 + np.log(np.asarray(counts, dtype=np.float64))) * self.idf[np.asarray(columns, dtype=np.int64)]
        shape = (len(documents), len(self.vocabulary))
        indices = torch.tensor([rows, columns], dtype=torch.long).reshape(2, -1)
        values = torch.tensor(values, dtype=torch.float32)
        matrix = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True).coalesce()
        norms = torch.zeros(shape[0]).index_add_(0, matrix.indices()[0], matrix.values() ** 2).sqrt().clamp(min=1e-12)
        normalised = matrix.values() / norms[matrix.indices()[0]]
        return torch.sparse_coo_tensor(matrix.indices(), normalised, shape, check_invariants=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32 unit vectors (zero rows for texts without a known word)."""
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        rank = self.projection.shape[1]
        if rank and len(texts):
            reduced = torch.sparse.mm(self._tfidf([_words(t) for t in texts]), torch.as_tensor(self.projection))
            vectors[:, :rank] = reduced.numpy()
        lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, lengths, out=np.zeros_like(vectors), where=lengths > 0)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def tfidf_svd(texts: Sequence[str], dim: int = 64, min_df: int = 2, seed: int = 0) -> np.ndarray:
    """``[len(texts), dim]`` float32 unit vectors of ``texts`` from an encoder fit on them (zero rows for texts
    without a kept word)."""
    return TfidfSvd.fit(texts, dim, min_df, seed).encode(texts)


@dataclass
class SentenceEncoder:
    """A sentence-transformers model given by name or path, as an item text encoder (``--item_text_encoder``):
    unit vectors, zero rows for items without text, as ``TfidfSvd.encode`` gives. The package is optional (not a
    bertrec dependency) and loaded on first use; a saved tokenizer records the model's name or path, so whoever
    adds items later needs the same model there."""

    model: str
    dim: int = 0
    _loaded: object = None

    @property
    def description(self) -> str:
        """What the model card says the item vectors are."""
        return f"sentence-transformers `{self.model}`, {self.dim} dimensions"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._loaded is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                raise ImportError(
                    f"item text encoder {self.model!r} is a sentence-transformers model: pip install "
                    "sentence-transformers (or use the built-in encoder, --item_text_encoder tfidf)"
                ) from error
            self._loaded = SentenceTransformer(self.model, device="cpu")
        texts = list(texts)
        vectors = self._loaded.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        vectors[[not text.strip() for text in texts]] = 0.0
        self.dim = vectors.shape[1]
        return vectors
