import math

import numpy as np
import pytest
import torch

from bertrec.metrics import metrics_from_ranks, pessimistic_ranks


def test_ties_count_against_the_model():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.1, 0.9, 0.9, 0.2], [5.0, 1.0, 2.0, 3.0]])
    ranks = pessimistic_ranks(scores, torch.tensor([0, 1, 0]))
    # constant scorer: the target ties with all 4 items -> last; a tie with one other item -> rank 2
    assert ranks.tolist() == [4.0, 2.0, 1.0]


def test_constant_scorer_gets_nothing():
    scores = torch.zeros(50, 20)
    ranks = pessimistic_ranks(scores, torch.randint(20, (50,)))
    metrics = metrics_from_ranks(ranks, ks=(10,))
    assert metrics["hr@10"] == 0.0 and metrics["ndcg@10"] == 0.0 and metrics["mrr@10"] == 0.0


def test_hand_computed_metrics():
    metrics = metrics_from_ranks([1, 2, 4, 11], ks=(1, 3, 10))
    assert metrics["hr@1"] == pytest.approx(0.25)
    assert metrics["hr@3"] == pytest.approx(0.5)
    assert metrics["hr@10"] == pytest.approx(0.75)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert metrics["mrr@3"] == pytest.approx((1 + 0.5) / 4)
    assert metrics["mrr@10"] == pytest.approx((1 + 0.5 + 0.25) / 4)
    assert metrics["recall@10"] == metrics["hr@10"]
    assert metrics["users"] == 4


def test_k_larger_than_catalogue_and_unrankable_targets():
    scores = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, float("-inf"), 1.0]])
    ranks = pessimistic_ranks(scores, torch.tensor([2, -1, 1]))  # last item; unknown item; excluded item
    assert ranks[0] == 3 and math.isinf(ranks[1]) and math.isinf(ranks[2])
    metrics = metrics_from_ranks(ranks, ks=(100,))
    assert metrics["hr@100"] == pytest.approx(1 / 3)  # only the known, rankable target is a hit


def test_seen_exclusion_moves_target_up():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    assert pessimistic_ranks(scores, torch.tensor([2])).item() == 3
    masked = scores.index_put((torch.tensor([0, 0]), torch.tensor([0, 1])), torch.tensor(float("-inf")))
    assert pessimistic_ranks(masked, torch.tensor([2])).item() == 1


def test_bad_ranks_are_rejected():
    with pytest.raises(ValueError, match="1-based"):
        metrics_from_ranks(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="non-empty"):
        metrics_from_ranks([])
