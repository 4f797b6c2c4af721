"""Transition scores (bertrec.transitions): the counted table, the term at causal and masked positions, the
left-out own transition in training, and the saved folder."""

import numpy as np
import pytest
import torch

from bertrec import stacked, transitions
from bertrec.collators import TokenLayout, pad_sequences
from bertrec.losses import ItemLoss
from bertrec.modeling import build_model
from bertrec.tokenization import EventTokenizer


@pytest.fixture
def tok(small_sequences):
    return EventTokenizer.build(small_sequences, layout="time+action+item", max_events=10)


def _window(tok, names, actions=None, bucket=3):
    actions = actions or ["view"] * len(names)
    t = tok.vocab[f"<t:{bucket}>"]
    return np.array([[t, tok.vocab[f"<a:{a}>"], tok.vocab[f"<i:{n}>"]] for n, a in zip(names, actions)])


def test_count_table_keeps_the_most_frequent_successors_and_no_repeats(tok):
    layout = TokenLayout.from_tokenizer(tok)
    windows = [_window(tok, ["a", "b", "a", "c", "a", "b", "b"]), _window(tok, ["c", "a", "a"])]
    successors, counts = transitions.count_table(windows, layout, max_successors=2)
    index = {name: tok.vocab[f"<i:{name}>"] - tok.item_offset for name in "abc"}
    # a -> b twice, a -> c once; a -> a (a repeat) is not a transition; b -> a once (b -> b is a repeat)
    assert successors[index["a"]].tolist() == [index["b"], index["c"]] and counts[index["a"]].tolist() == [2, 1]
    assert successors[index["b"]].tolist() == [index["a"], -1] and counts[index["b"]].tolist() == [1, 0]
    assert counts[index["c"]].tolist() == [2, 0]  # c -> a in both windows; nothing is counted across windows
    capped, _ = transitions.count_table(windows, layout, max_successors=1)
    assert capped[index["a"]].tolist() == [index["b"]]


def test_term_reads_the_last_event_and_its_cell_and_leaves_out_a_training_rows_own_transition(tok):
    layout = TokenLayout.from_tokenizer(tok)
    index = {name: tok.vocab[f"<i:{name}>"] - tok.item_offset for name in "abc"}
    successors = torch.full((tok.num_items, 2), -1, dtype=torch.long)
    counts = torch.zeros(tok.num_items, 2)
    successors[index["b"]] = torch.tensor([index["c"], index["a"]])
    counts[index["b"]] = torch.tensor([5.0, 2.0])
    shape = transitions.weight_shape(layout)
    weight = torch.arange(np.prod(shape), dtype=torch.float32).reshape(shape) / 10
    events = _window(tok, ["a", "b"], ["view", "cart"])
    next_fields = torch.tensor([[tok.vocab["<next:t:3>"], tok.mask_id], [tok.vocab["<next:t:1>"], tok.mask_id]])
    ids = torch.cat([torch.as_tensor(events), next_fields], dim=1)[None]
    rows, positions = torch.tensor([0]), torch.tensor([1])
    items, values = transitions.transition_term(weight, successors, counts, layout, ids, rows, positions, causal=True)
    scores = transitions.add_to(torch.zeros(1, tok.num_items), (items, values))[0]
    w = weight[0, 1 + 1, 1 + tok.spec.actions.index("cart")]  # not asked, gap <next:t:1>, the last event a cart
    assert scores[index["c"]] == pytest.approx(float(w * np.log1p(5))) and scores[index["b"]] == 0
    assert scores[index["a"]] == pytest.approx(float(w * np.log1p(2)))
    # a training row whose target is c counts one c fewer; a masked model reads the event before the position
    _, values = transitions.transition_term(
        weight, successors, counts, layout, ids, rows, positions, causal=True, targets=torch.tensor([index["c"]])
    )
    assert values[0, 0] == pytest.approx(float(w * np.log1p(4)))
    masked = torch.as_tensor(np.concatenate([events, _window(tok, ["c"], bucket=0)]))[None]
    masked[0, 2, 1:] = tok.mask_id  # the predicted event: its gap (<t:0>) shown, action and item masked
    _, values = transitions.transition_term(
        weight, successors, counts, layout, masked, rows, torch.tensor([2]), causal=False
    )
    assert values[0, 0] == pytest.approx(float(weight[0, 1 + 0, 1 + tok.spec.actions.index("cart")] * np.log1p(5)))
    _, first = transitions.transition_term(
        weight, successors, counts, layout, masked, rows, torch.tensor([0]), causal=False
    )
    assert first.abs().sum() == 0  # nothing before the first event


def test_weights_train_with_the_softmax_and_a_folder_missing_half_is_refused(tok, small_sequences, tmp_path):
    layout = TokenLayout.from_tokenizer(tok)
    model = build_model(
        model_type="gpt2", vocab_size=tok.vocab_size, max_positions=16, hidden_size=16, num_layers=1, num_heads=1
    )
    windows = tok.encode_training_windows(small_sequences, min_events=2)
    weight = transitions.attach(model, layout, windows)
    assert transitions.attach(model, layout, windows) is weight  # attached once
    loss_module = ItemLoss(model, item_offset=tok.item_offset, num_items=tok.num_items, layout=layout)
    batch = pad_sequences(windows, tok.pad_id)
    inputs, labels = stacked.next_event_batch(
        batch["input_ids"],
        batch["attention_mask"],
        layout,
        hide_action_prob=0.0,
        noise=torch.rand(*batch["attention_mask"].shape, 2),
    )
    loss_module(inputs, batch["attention_mask"], labels).backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    transitions.save_table(model, tmp_path)
    model.config.transition_weight = weight.detach().tolist()
    reloaded = build_model(
        model_type="gpt2", vocab_size=tok.vocab_size, max_positions=16, hidden_size=16, num_layers=1, num_heads=1
    )
    reloaded.config.transition_weight = model.config.transition_weight
    transitions.load(reloaded, tmp_path)
    torch.testing.assert_close(transitions.weight_of(reloaded), weight.detach())
    for got, expected in zip(transitions.table_of(reloaded), transitions.table_of(model)):
        assert torch.equal(got, expected)
    (tmp_path / transitions.FILE).unlink()
    with pytest.raises(ValueError, match="transitions.safetensors"):
        transitions.load(reloaded, tmp_path)


def test_an_item_added_after_counting_has_no_successors(tok):
    """Fine-tuning with new items grows the catalogue past the counted table: their rows read as empty."""
    layout = TokenLayout.from_tokenizer(tok)
    newest = tok.inverse_vocab[tok.item_offset + tok.num_items - 1][3:-1]
    successors = torch.zeros((tok.num_items - 1, 2), dtype=torch.long)  # counted before the newest item existed
    counts = torch.ones(tok.num_items - 1, 2)
    weight = torch.ones(transitions.weight_shape(layout))
    ids = torch.cat([torch.as_tensor(_window(tok, [newest])), torch.full((1, 2), tok.mask_id)], dim=1)[None]
    _, values = transitions.transition_term(
        weight, successors, counts, layout, ids, torch.tensor([0]), torch.tensor([0]), causal=True
    )
    assert values.abs().sum() == 0
