import numpy as np
import pytest
import torch

from bertrec.collators import (
    IGNORE,
    TokenLayout,
    assert_labels_causal,
    assert_targets_hidden,
    last_event_labels,
    mask_events,
    next_event_labels,
    pad_sequences,
    window_noise,
)

# ids: pad 0, mask 4, actions 10-11, times 20-21, items from 100 (5 items)
LAYOUTS = {
    "item": TokenLayout(1, False, False, 100, 5, 0, 4),
    "action item": TokenLayout(2, True, False, 100, 5, 0, 4),
    "time item": TokenLayout(2, False, True, 100, 5, 0, 4),
    "time action item": TokenLayout(3, True, True, 100, 5, 0, 4),
}


def events(items, layout):
    fields = {"item": [], "action item": [10], "time item": [20], "time action item": [20, 10]}[layout]
    return np.array([t for i in items for t in [*fields, 100 + i]])


def test_padding_is_right_sided():
    batch = pad_sequences([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_next_event_labels_predict_items_from_positions_that_have_not_seen_them(layout):
    spec = LAYOUTS[layout]
    batch = pad_sequences([events([0, 1, 2], layout), events([3, 4], layout)], pad_id=0)
    labels = next_event_labels(batch["input_ids"], batch["attention_mask"], spec, conditioned=True)
    ids = batch["input_ids"]
    per_event = spec.tokens_per_event
    for row, items in enumerate([[0, 1, 2], [3, 4]]):
        labelled = (labels[row] != IGNORE).nonzero().flatten().tolist()
        # every event after the first is supervised once unconditioned (+ once at the previous item when the
        # unconditioned position is a time token, + once conditioned on its action)
        assert len(labelled) == (len(items) - 1) * (1 + spec.has_time + spec.has_action)
        for pos in labelled:
            target = labels[row, pos].item()
            # the label is the first item token strictly after the position: causal attention cannot see it
            item_pos = next(p for p in range(pos + 1, ids.shape[1]) if p % per_event == per_event - 1)
            assert ids[row, item_pos].item() == 100 + target
        if spec.has_time:
            # the unconditioned positions are the event's time token, which has not seen the event's action, and
            # the previous event's item
            kinds = {p % per_event for p in labelled}
            before_item = {ids[row, p].item() for p in labelled if p % per_event < per_event - 1}
            assert kinds == set(range(per_event)) and before_item <= {20, 10} and 20 in before_item


def test_masked_events_hide_targets_and_keep_time():
    spec = LAYOUTS["time action item"]
    batch = pad_sequences([events([0, 1, 2, 3], "time action item"), events([4], "time action item")], pad_id=0)
    masked, labels = mask_events(
        batch["input_ids"],
        batch["attention_mask"],
        spec,
        mask_prob=0.5,
        mask_action_prob=1.0,
        noise=window_noise([0, 1], [4, 1], width=4),
    )
    labelled = labels != IGNORE
    assert labelled.any(dim=1).all()  # at least one masked event per sequence, even the one-event sequence
    assert (masked[labelled] == spec.mask_id).all()
    assert (masked[:, 0::3] == batch["input_ids"][:, 0::3]).all()  # time tokens are never masked
    assert (masked[:, 1::3][labelled[:, 2::3]] == spec.mask_id).all()  # mask_action_prob=1 hides the actions
    assert (labels[labelled] == batch["input_ids"][labelled] - 100).all()
    assert not labelled[1, 3:].any()  # nothing labelled in padding


def test_a_windows_draws_do_not_depend_on_its_batch_its_padding_or_its_row():
    """What makes one process and two (or any batch size or order) mask the same events of a window."""
    alone = window_noise([7], [5], width=5)
    batched = window_noise([3, 7, 9], [2, 5, 8], width=8)
    assert torch.equal(batched[1, :5], alone[0]) and (batched[1, 5:] == 1.0).all()  # padding is never chosen
    assert not torch.equal(batched[0, :2], batched[1, :2])  # another seed, other draws
    assert ((batched >= 0) & (batched < 1))[2].all()


def test_masking_follows_the_draws_and_picks_one_real_event_where_none_was_drawn():
    spec = LAYOUTS["item"]
    batch = pad_sequences([events(list(range(5)) * 4, "item")] * 8 + [events([1, 2, 3], "item")], pad_id=0)
    noise = window_noise(range(9), [20] * 8 + [3], width=20)

    def labelled(noise: torch.Tensor, mask_prob: float) -> torch.Tensor:
        ids, attention = batch["input_ids"], batch["attention_mask"]
        return mask_events(ids, attention, spec, mask_prob=mask_prob, mask_action_prob=0.0, noise=noise)[1] != IGNORE

    chosen = labelled(noise, 0.3)
    assert torch.equal(chosen[:8], noise[:8, :, 0] < 0.3)
    assert torch.equal(labelled(noise, 0.3), chosen) and not torch.equal(labelled(torch.rand_like(noise), 0.3), chosen)
    fallback = labelled(noise, 0.0)  # nothing drawn: each row's real event with the lowest draw, never padding
    assert (fallback.sum(dim=1) == 1).all() and not fallback[8, 3:].any()
    assert torch.equal(
        fallback.float().argmax(dim=1), torch.where(batch["attention_mask"].bool(), noise[..., 0], 2.0).argmin(dim=1)
    )


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_causal_guard_fires_on_labels_that_see_their_target_and_allows_repeats(layout):
    spec = LAYOUTS[layout]
    # user repeats item 1 right after seeing it: a legitimate repeat, not a leak
    batch = pad_sequences([events([0, 1, 1, 2], layout), events([3, 4], layout)], pad_id=0)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    labels = next_event_labels(ids, attention, spec, conditioned=True)  # the guard runs inside and passes
    _, prompt_labels = last_event_labels(ids, attention, spec, objective="next", conditioned=False)
    assert (prompt_labels != IGNORE).sum() == 2
    if spec.has_time:  # unconditioned, the prompt ends at the target's time token, as encode_prompts builds it
        assert (ids[prompt_labels != IGNORE] == 20).all()
    # the classic off-by-one: labels on the items' own positions (no causal shift)
    item_positions = torch.arange(spec.tokens_per_event - 1, ids.shape[1], spec.tokens_per_event)
    leaky = torch.full_like(ids, IGNORE)
    leaky[:, item_positions] = spec.item_index(ids[:, item_positions])
    with pytest.raises(AssertionError, match="leakage: a next-event label"):
        assert_labels_causal(ids, leaky, spec)
    # a single leaky label among correct ones: user 2's last item labelled on its own position
    last_item = int(attention[1].sum()) - 1
    one_leak = labels.clone()
    one_leak[1, last_item] = spec.item_index(ids[1, last_item])
    with pytest.raises(AssertionError, match="leakage"):
        assert_labels_causal(ids, one_leak, spec)


def test_masked_guard_fires_when_a_labelled_position_shows_its_target():
    spec = LAYOUTS["action item"]
    batch = pad_sequences([events([0, 1, 2, 3], "action item")], pad_id=0)
    masked, labels = mask_events(
        batch["input_ids"],
        batch["attention_mask"],
        spec,
        mask_prob=0.5,
        mask_action_prob=0.0,
        noise=window_noise([3], [4], width=4),
    )
    assert_targets_hidden(masked, labels, spec)  # what the collator returns is clean
    leaky = masked.clone()
    labelled = labels != IGNORE
    leaky[labelled] = batch["input_ids"][labelled]  # a collator that forgot to put [MASK] in the item slot
    with pytest.raises(AssertionError, match="leakage: a masked-event target is visible"):
        assert_targets_hidden(leaky, labels, spec)
