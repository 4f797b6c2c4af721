import torch
import torch.nn.functional as F

from bertrec.losses import ItemLoss, full_softmax_loss, sampled_softmax_loss, seen_items
from bertrec.modeling import backbone_hidden, build_model, head_features, item_logits


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


def test_seen_items_are_the_history_up_to_each_position_never_the_target():
    # item tokens from id 4 (items 0-4); 0 is padding; window 0 repeats item 1 as its last target
    ids = torch.tensor([[5, 6, 7, 0], [7, 5, 0, 0]])
    labels = torch.tensor([[2, 3, 1, -100], [1, -100, -100, -100]])
    labelled = labels != -100
    targets = labels[labelled]
    causal = _as_mask(seen_items(ids, labelled, targets, item_offset=4, num_items=5, causal=True), 4, 5)
    assert causal.int().tolist() == [[0, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0]]
    masked = _as_mask(seen_items(ids, labelled, targets, item_offset=4, num_items=5, causal=False), 4, 5)
    assert masked.int().tolist() == [[0, 1, 0, 1, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0]]


def _as_mask(pairs: tuple[torch.Tensor, torch.Tensor], rows: int, num_items: int) -> torch.Tensor:
    mask = torch.zeros(rows, num_items, dtype=torch.bool)
    mask[pairs] = True
    return mask


def test_loss_excluding_seen_items_is_the_softmax_over_the_unseen_rest():
    model = tiny_model().eval()  # no dropout, so every forward sees the same features
    ids = torch.tensor([[12, 13, 14, 15, 16, 17]])
    labels = torch.full_like(ids, -100)
    labels[0, 3] = 9  # after items 2, 3, 4, 5 comes item 9
    plain = ItemLoss(model, item_offset=10, num_items=50)
    excluding = ItemLoss(model, item_offset=10, num_items=50, exclude_seen=True)
    mask = torch.ones_like(ids)
    features = head_features(model, backbone_hidden(model, ids, mask)[0, 3:4])
    logits = item_logits(model, features, 10, 50)
    unseen = [i for i in range(50) if i not in (2, 3, 4, 5)]
    expected = -torch.log_softmax(logits[:, unseen], dim=1)[0, unseen.index(9)]
    assert torch.allclose(excluding(ids, mask, labels), expected, atol=1e-6)
    assert excluding(ids, mask, labels) < plain(ids, mask, labels)
    sampled = ItemLoss(model, item_offset=10, num_items=50, item_log_frequency=torch.full((50,), -3.9),
                       num_uniform_negatives=50, exclude_seen=True)  # fmt: skip
    assert torch.isfinite(sampled(ids, mask, labels, torch.Generator().manual_seed(0)))


def test_sampled_loss_leaves_out_exactly_the_seen_candidates():
    """The seen pairs reach the sampled softmax by candidate column: the same loss as masking a dense
    [rows, items] matrix of seen items over the candidates (the reference written out here)."""
    model = tiny_model().eval()
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(10, 60, (3, 8), generator=generator)
    labels = torch.randint(0, 50, (3, 8), generator=generator)
    labels[:, 0] = -100
    labelled = labels != -100
    targets = labels[labelled]
    features = head_features(model, backbone_hidden(model, ids, torch.ones_like(ids))[labelled])
    log_frequency = torch.log_softmax(torch.rand(50, generator=generator), dim=0)
    pairs = seen_items(ids, labelled, targets, 10, 50, causal=True)
    assert len(pairs[0]) > 0
    loss = sampled_softmax_loss(
        model, features, targets, 10, log_frequency, 20, torch.Generator().manual_seed(9), pairs
    )
    uniform = torch.randint(50, (20,), generator=torch.Generator().manual_seed(9))
    candidates, inverse = torch.unique(torch.cat([targets, uniform]), return_inverse=True)
    expected_count = targets.numel() * log_frequency[candidates].exp() + 20 / 50
    logits = item_logits(model, features, 10, 50, items=candidates) - expected_count.log()
    seen = _as_mask(pairs, len(targets), 50)[:, candidates]
    assert seen.any()
    reference = F.cross_entropy(logits.masked_fill(seen, float("-inf")), inverse[: targets.numel()])
    assert torch.allclose(loss, reference, atol=1e-6)


def test_seen_items_in_chunks_equal_one_pass(monkeypatch):
    import bertrec.losses

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30, (7, 40), generator=generator)
    labelled = torch.rand(7, 40, generator=generator) < 0.5
    targets = torch.randint(0, 20, (int(labelled.sum()),), generator=generator)
    for causal in (True, False):
        whole = _as_mask(seen_items(ids, labelled, targets, 5, 20, causal), len(targets), 20)
        monkeypatch.setattr(bertrec.losses, "_SEEN_ROWS_PER_CHUNK", 3)
        assert torch.equal(_as_mask(seen_items(ids, labelled, targets, 5, 20, causal), len(targets), 20), whole)
        monkeypatch.setattr(bertrec.losses, "_SEEN_ROWS_PER_CHUNK", 4096)
        assert whole.any() and not whole.all()


def test_cosine_logits_train_unit_item_rows_that_the_stock_head_ranks_as_trained():
    model = tiny_model().eval()
    special_rows = model.lm_head.weight[:10].detach().clone()
    loss_module = ItemLoss(model, item_offset=10, num_items=50, temperature=0.05)
    item_rows = model.lm_head.weight[10:60]
    assert torch.allclose(item_rows.norm(dim=1), torch.ones(50), atol=1e-6)  # set at construction
    ids = torch.tensor([[12, 13, 14, 15]])
    labels = torch.tensor([[-100, -100, 7, -100]])
    mask = torch.ones_like(ids)
    features = head_features(model, backbone_hidden(model, ids, mask)[0, 2:3])
    cosine = F.normalize(features, dim=-1) @ F.normalize(item_rows, dim=-1).T
    assert torch.allclose(loss_module(ids, mask, labels), F.cross_entropy(cosine / 0.05, torch.tensor([7])), atol=1e-5)

    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    loss_module(ids, mask, labels).backward()
    optimizer.step()
    assert not torch.allclose(model.lm_head.weight[10:60].norm(dim=1), torch.ones(50), atol=1e-3)  # the step moved them
    loss_module.after_optimizer_step()
    assert torch.allclose(model.lm_head.weight[10:60].norm(dim=1), torch.ones(50), atol=1e-6)
    assert model.transformer.wte.weight is model.lm_head.weight  # still tied: the input embedding is the same
    assert torch.equal(model.lm_head.weight[:10], special_rows)  # the projection leaves non-item rows alone
    with torch.no_grad():
        features = head_features(model, backbone_hidden(model, ids, mask)[0, 2:3])
        stock = model(input_ids=ids).logits[0, 2, 10:60]
        trained = item_logits(model, features, 10, 50, temperature=0.05)[0]
    assert torch.equal(stock.argsort(descending=True), trained.argsort(descending=True))
    sampled = ItemLoss(model, item_offset=10, num_items=50, item_log_frequency=torch.full((50,), -3.9),
                       num_uniform_negatives=50, temperature=0.05)  # fmt: skip
    assert torch.isfinite(sampled(ids, mask, labels, torch.Generator().manual_seed(0)))
