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
