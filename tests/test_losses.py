import torch
import torch.nn.functional as F

from bertrec.losses import ItemLoss, full_softmax_loss, sampled_softmax_loss
from bertrec.modeling import build_model, item_logits


def tiny_model():
    torch.manual_seed(0)
    return build_model(model_type="gpt2", vocab_size=60, max_positions=8, hidden_size=8, num_heads=2)


def test_full_softmax_is_cross_entropy_over_items_only():
    model = tiny_model()
    features, targets = torch.randn(5, 8), torch.tensor([0, 3, 49, 3, 7])
    expected = F.cross_entropy(model.lm_head(features)[:, 10:60], targets)
    assert torch.allclose(full_softmax_loss(model, features, targets, 10, 50), expected)


def test_sampled_softmax_uses_unique_candidates_with_logq_correction():
    model = tiny_model()
    features, targets = torch.randn(4, 8), torch.tensor([1, 1, 5, 9])
    log_frequency = torch.log(torch.linspace(1, 2, 50) / torch.linspace(1, 2, 50).sum())
    generator = torch.Generator().manual_seed(3)
    loss = sampled_softmax_loss(model, features, targets, 10, log_frequency, 6, generator)
    uniform = torch.randint(50, (6,), generator=torch.Generator().manual_seed(3))
    candidates = torch.unique(torch.cat([targets, uniform]))
    expected_count = 4 * log_frequency[candidates].exp() + 6 / 50
    logits = item_logits(model, features, 10, 50, items=candidates) - expected_count.log()
    labels = torch.searchsorted(candidates, targets)
    assert torch.allclose(loss, F.cross_entropy(logits, labels))


def test_item_loss_trains_only_labelled_positions():
    model = tiny_model()
    loss_module = ItemLoss(model, item_offset=10, num_items=50)
    ids = torch.randint(10, 60, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[0, 2] = 4
    loss = loss_module(ids, torch.ones_like(ids), labels)
    loss.backward()
    assert loss.item() > 0 and model.lm_head.weight.grad is not None
    sampled = ItemLoss(model, item_offset=10, num_items=50, item_log_frequency=torch.full((50,), -3.9),
                       num_uniform_negatives=8)  # fmt: skip
    assert torch.isfinite(sampled(ids, torch.ones_like(ids), labels, torch.Generator().manual_seed(0)))


def test_seen_mask_covers_each_positions_history_only():
    from bertrec.losses import seen_item_mask

    # offset 10, 50 items; ids below 10 are actions/time tokens, 0 is padding
    ids = torch.tensor([[3, 12, 4, 15, 3, 12, 0], [11, 11, 13, 0, 0, 0, 0]])
    labelled = torch.zeros_like(ids, dtype=torch.bool)
    labelled[0, 2] = labelled[0, 5] = labelled[1, 0] = True
    seen = seen_item_mask(ids, labelled, 10, 50)
    assert seen.shape == (3, 50)
    assert seen[0].nonzero().flatten().tolist() == [2]  # up to position 2: item 12 only
    assert seen[1].nonzero().flatten().tolist() == [2, 5]  # 12, 15 (12 again adds nothing)
    assert seen[2].nonzero().flatten().tolist() == [1]


def test_unseen_softmax_leaves_other_history_items_out():
    from bertrec.losses import unseen_softmax_loss

    model = tiny_model()
    features, targets = torch.randn(3, 8), torch.tensor([4, 2, 7])
    seen = torch.zeros(3, 50, dtype=torch.bool)
    seen[0, [1, 2]] = True  # target 4 is new
    seen[1, [2, 3]] = True  # target 2 repeats a seen item: it stays in its own softmax, item 3 leaves
    seen[2, 9] = True
    loss = unseen_softmax_loss(model, features, targets, seen, 10, 50)
    competing = seen.clone()
    competing[1, 2] = False
    logits = model.lm_head(features)[:, 10:60].masked_fill(competing, float("-inf"))
    assert torch.allclose(loss, F.cross_entropy(logits, targets))
    assert loss < full_softmax_loss(model, features, targets, 10, 50)  # fewer competitors


def test_item_loss_exclude_seen_wires_the_mask_and_refuses_sampled():
    import pytest

    model = tiny_model()
    ids = torch.tensor([[12, 15, 12, 20]])
    labels = torch.full_like(ids, -100)
    labels[0, 2] = 10  # after [12, 15, 12] comes 20: items 12 and 15 leave its softmax
    model.eval()  # no dropout: the reference below is computed separately
    got = ItemLoss(model, item_offset=10, num_items=50, exclude_seen=True)(ids, torch.ones_like(ids), labels)
    hidden = model.transformer(input_ids=ids).last_hidden_state[0, 2]
    logits = model.lm_head(hidden)[10:60]
    logits[[2, 5]] = float("-inf")
    assert torch.allclose(got, F.cross_entropy(logits[None], torch.tensor([10])), atol=1e-6)
    with pytest.raises(ValueError, match="full softmax"):
        ItemLoss(model, item_offset=10, num_items=50, item_log_frequency=torch.zeros(50), exclude_seen=True)
