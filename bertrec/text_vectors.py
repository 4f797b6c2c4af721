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

import numpy as np
import torch

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def tfidf_svd(texts: Sequence[str], dim: int = 64, min_df: int = 2, seed: int = 0) -> np.ndarray:
    """``[len(texts), dim]`` float32 unit vectors (zero rows for texts without a kept word)."""
    documents = [_WORD.findall(text.lower()) for text in texts]
    document_frequency: dict[str, int] = {}
    for words in documents:
        for word in set(words):
            document_frequency[word] = document_frequency.get(word, 0) + 1
    vocabulary = {w: i for i, w in enumerate(sorted(w for w, df in document_frequency.items() if df >= min_df))}
    rows, columns, counts = [], [], []
    for row, words in enumerate(documents):
        tf: dict[int, int] = {}
        for word in words:
            column = vocabulary.get(word)
            if column is not None:
                tf[column] = tf.get(column, 0) + 1
        rows += [row] * len(tf)
        columns += list(tf)
        counts += list(tf.values())
    n = len(texts)
    if not vocabulary:
        return np.zeros((n, dim), dtype=np.float32)
    df = np.array([document_frequency[w] for w in sorted(vocabulary)], dtype=np.float64)
    idf = np.log((1 + n) / (1 + df)) + 1.0
    values = (1.0 + np.log(np.asarray(counts, dtype=np.float64))) * idf[np.asarray(columns, dtype=np.int64)]
    matrix = torch.sparse_coo_tensor(
        torch.tensor([rows, columns]),
        torch.tensor(values, dtype=torch.float32),
        (n, len(vocabulary)),
        check_invariants=True,
    ).coalesce()
    norms = torch.zeros(n).index_add_(0, matrix.indices()[0], matrix.values() ** 2).sqrt().clamp(min=1e-12)
    matrix = torch.sparse_coo_tensor(
        matrix.indices(), matrix.values() / norms[matrix.indices()[0]], matrix.shape, check_invariants=True
    )
    rank = min(dim, n, len(vocabulary))
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # svd_lowrank draws a random projection
    try:
        u, s, _ = torch.svd_lowrank(matrix, q=rank, niter=6)
    finally:
        torch.random.set_rng_state(generator_state)
    vectors = np.zeros((n, dim), dtype=np.float32)
    vectors[:, :rank] = (u * s).numpy()
    lengths = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, lengths, out=np.zeros_like(vectors), where=lengths > 0)
