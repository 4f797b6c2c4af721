"""Counting item pairs (an item and the item after it) over a log too long to hold its pairs at once.

The Markov baseline, the transition-based item initialisation and the transition scores all start from the
same table: how often item ``j`` followed item ``i``. Collecting every consecutive pair of a 50M-event log
before counting held 0.4 GB of keys and sorted copies of them; ``PairCounter`` counts a few million pairs at a
time and merges them into one sorted table of distinct pairs, so memory follows the distinct pairs (bounded by
the catalogue), not the log's length.
"""

from __future__ import annotations

import numpy as np

PAIRS_PER_FLUSH = 4_000_000


class PairCounter:
    """Add ``(sources, targets)`` item-index arrays in any number of calls; ``result`` gives each distinct pair
    once with its count, sorted by source then target."""

    def __init__(self, num_items: int, pairs_per_flush: int = PAIRS_PER_FLUSH):
        self.num_items, self.pairs_per_flush = num_items, pairs_per_flush
        self.keys, self.counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_pairs = 0

    def add(self, sources: np.ndarray, targets: np.ndarray) -> None:
        if len(sources):
            self._pending.append(np.asarray(sources, np.int64) * self.num_items + np.asarray(targets, np.int64))
            self._pending_pairs += len(sources)
        if self._pending_pairs >= self.pairs_per_flush:
            self._flush()

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sources, targets, counts)`` of every distinct pair added."""
        self._flush()
        return self.keys // self.num_items, self.keys % self.num_items, self.counts

    def _flush(self) -> None:
        if not self._pending:
            return
        new, new_counts = np.unique(np.concatenate(self._pending), return_counts=True)
        self._pending, self._pending_pairs = [], 0
        # both sides sorted and distinct: add the counts of pairs already held, insert the others in order
        at = np.searchsorted(self.keys, new)
        held = at < len(self.keys)
        held[held] = self.keys[at[held]] == new[held]
        self.counts[at[held]] += new_counts[held]  # distinct positions: a plain indexed add
        self.keys = np.insert(self.keys, at[~held], new[~held])
        self.counts = np.insert(self.counts, at[~held], new_counts[~held])
