"""The ranking metrics load as an `evaluate` module from the repository path."""

from pathlib import Path

import evaluate
import pytest

METRIC = str(Path(__file__).parents[1] / "bertrec" / "evaluate_metric" / "ranking.py")


def test_scores_config_counts_ties_against_the_model():
    metric = evaluate.load(METRIC)
    result = metric.compute(predictions=[[0.1, 0.9, 0.3], [1.0, 1.0, 1.0], [0.5, 0.2, 0.1]], references=[1, 0, -1],
                            k=[1, 10])  # fmt: skip
    assert result["hr@1"] == pytest.approx(1 / 3)  # only the first; the constant scorer ranks its target last
    assert result["hr@10"] == pytest.approx(2 / 3)  # the unknown target (-1) is a miss even at K > catalogue
    assert result["users"] == 3


def test_ranks_config():
    metric = evaluate.load(METRIC, "ranks")
    result = metric.compute(predictions=[1, 2, float("inf")], k=10)
    assert result["mrr@10"] == pytest.approx(0.5)
