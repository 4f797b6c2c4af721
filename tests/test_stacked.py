"""Stacked layouts (one position per event) and repeat scores: encoding, labels, prompts, leakage guards."""

import numpy as np
import polars as pl
import pytest
import torch

from bertrec import repeats, stacked
from bertrec.collators import IGNORE, TokenLayout, pad_sequences
from bertrec.evaluation import encode_prompts
from bertrec.losses import ItemLoss
from bertrec.modeling import backbone_hidden, build_model
from bertrec.tokenization import EventTokenizer


@pytest.fixture
def tok(small_sequences):
    return EventTokenizer.build(small_sequences, layout="time+action+item", max_events=10)


def test_stacked_vocabulary_and_encoding(tok, small_sequences):
    layout = TokenLayout.from_tokenizer(tok)
    assert layout.stacked and layout.fields == ("time", "action", "item") and tok.spec.positions_per_event == 1
    vocab = tok.vocab
    # the next-event tokens sit between the time buckets and the items, one per action and per bucket
    assert vocab["<next:a:cart>"] - layout.next_action_offset == vocab["<a:cart>"] - layout.action_offset
    assert vocab["<next:t:3>"] - layout.next_time_offset == vocab["<t:3>"] - layout.time_offset
    assert min(i for t, i in vocab.items() if t.startswith("<i:")) == tok.item_offset > layout.next_time_offset
    windows = tok.encode_training_windows(small_sequences, min_events=2)
    first = windows[0]
    assert first.shape == (5, 3)  # u1: 5 events x (time, action, item)
    # the text form, read by a plain tokenizer, gives the same ids row by row
    text = tok.history_to_text(
        ["a", "b", "b", "c", "a"], ["view", "view", "cart", "view", "purchase"], [0, 10, 70, 4000, 90000]
    )
    ids = tok.hf_tokenizer()(text)["input_ids"]
    assert np.array_equal(np.array(ids).reshape(-1, 3), first)


def test_next_event_batch_labels_the_next_item_and_shows_only_its_gap_and_action(tok, small_sequences):
    layout = TokenLayout.from_tokenizer(tok)
    windows = tok.encode_training_windows(small_sequences, min_events=2)
    batch = pad_sequences(windows, tok.pad_id)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    noise = torch.rand(*ids.shape[:2], 2, generator=torch.Generator().manual_seed(0))
    inputs, labels = stacked.next_event_batch(ids, mask, layout, hide_action_prob=0.0, noise=noise)
    assert inputs.shape == (*ids.shape[:2], 5)
    assert torch.equal(inputs[..., :3], ids)  # the event's own fields are untouched
    for row, length in enumerate(mask.sum(dim=1).tolist()):
        for i in range(length - 1):
            assert labels[row, i] == ids[row, i + 1, 2] - tok.item_offset
            assert inputs[row, i, 3] == stacked.as_next_time(layout, ids[row, i + 1, 0])
            assert inputs[row, i, 4] == stacked.as_next_action(layout, ids[row, i + 1, 1])
        assert labels[row, length - 1] == IGNORE and inputs[row, length - 1, 3] == tok.pad_id
    hidden, _ = stacked.next_event_batch(ids, mask, layout, hide_action_prob=1.0, noise=noise)
    assert bool((hidden[..., 4][mask[:, 1:].bool().nonzero(as_tuple=True)] == tok.mask_id).all())
    tampered = labels.clone()
    tampered[0, 0] = labels[0, 2]
    with pytest.raises(AssertionError, match="leakage"):
        stacked.assert_stacked_labels(ids, tampered, layout)


@pytest.mark.parametrize("layout", ["time+item", "time+action+item", "action+item"])
@pytest.mark.parametrize("objective", ["next", "masked"])
def test_training_batches_of_every_stacked_layout_draw_only_what_they_use(small_sequences, layout, objective):
    from bertrec.training import Objective

    tokenizer = EventTokenizer.build(small_sequences, layout=layout, max_events=10)
    windows = tokenizer.encode_training_windows(small_sequences, min_events=2)
    batch = pad_sequences(windows, tokenizer.pad_id)
    task = Objective(objective, TokenLayout.from_tokenizer(tokenizer), mask_prob=0.5)
    noise = task.noise(np.arange(len(windows)), np.array([len(w) for w in windows]), seed=0, epoch=0)
    assert (noise is None) == (objective == "next" and layout == "time+item")  # no action to hide, nothing drawn
    inputs, labels = task.inputs_and_labels(batch, noise)
    assert (labels != IGNORE).any() and inputs.shape[:2] == batch["input_ids"].shape[:2]


def test_masked_event_batch_hides_items_keeps_times(tok, small_sequences):
    layout = TokenLayout.from_tokenizer(tok)
    batch = pad_sequences(tok.encode_training_windows(small_sequences), tok.pad_id)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    noise = torch.rand(*ids.shape[:2], 2, generator=torch.Generator().manual_seed(1))
    masked, labels = stacked.masked_event_batch(ids, mask, layout, mask_prob=0.5, mask_action_prob=1.0, noise=noise)
    chosen = labels != IGNORE
    assert chosen.any(dim=1).all()
    assert bool((masked[..., 2][chosen] == tok.mask_id).all()) and bool((masked[..., 1][chosen] == tok.mask_id).all())
    assert torch.equal(masked[..., 0], ids[..., 0])  # the gap to a masked event is known when it is asked for
    assert torch.equal(labels[chosen], ids[..., 2][chosen] - tok.item_offset)
    assert torch.equal(masked[~chosen], ids[~chosen])


@pytest.mark.parametrize("model_type", ["gpt2", "bert"])
def test_fine_tuning_rows_match_the_evaluation_prompt(tok, small_sequences, model_type):
    """The labelled position of a training row (history + target) reads exactly what evaluation's prompt for
    that history reads, with the target's action asked: same features, not merely the same shape."""
    layout = TokenLayout.from_tokenizer(tok)
    objective = "masked" if model_type == "bert" else "next"
    row = tok.encode_sequences(small_sequences.head(1))[0]  # u1: a b b c a, the last a "purchase"
    inputs, labels = stacked.last_event_batch(
        torch.as_tensor(row)[None],
        torch.ones(1, len(row), dtype=torch.long),
        layout,
        objective=objective,
        conditioned=True,
    )
    position = int((labels[0] != IGNORE).nonzero()[0, 0])
    history = small_sequences.head(1).with_columns(pl.all().exclude("user_id").list.head(4))
    examples = history.with_columns(target_timestamp=pl.lit(90000.0))
    prompt = encode_prompts(tok, examples, objective, action="purchase")[0]
    assert np.array_equal(prompt, inputs[0, : position + 1].numpy())
    model = build_model(
        model_type=model_type, vocab_size=tok.vocab_size, max_positions=16, hidden_size=16, num_layers=1, num_heads=1
    ).eval()
    with torch.no_grad():
        train_hidden = backbone_hidden(model, inputs, torch.ones(inputs.shape[:2], dtype=torch.long))[0, position]
        prompt_ids = torch.as_tensor(prompt)[None]
        prompt_hidden = backbone_hidden(model, prompt_ids, torch.ones(prompt_ids.shape[:2], dtype=torch.long))[0, -1]
    if objective == "next":  # causal: later inputs cannot change the position's state
        torch.testing.assert_close(train_hidden, prompt_hidden)


def test_repeat_term_by_action_gap_recency_and_asked_action(tok):
    layout = TokenLayout.from_tokenizer(tok)
    bias = torch.arange(np.prod(repeats.table_shape(layout)), dtype=torch.float32).reshape(repeats.table_shape(layout))
    view, cart = tok.vocab["<a:view>"], tok.vocab["<a:cart>"]
    item = lambda name: tok.vocab[f"<i:{name}>"]  # noqa: E731
    t = tok.vocab["<t:3>"]
    events = [[t, view, item("a")], [t, cart, item("b")], [t, view, item("a")]]
    asked = tok.vocab["<next:a:purchase>"]
    ids = torch.tensor([[*e, tok.vocab["<next:t:3>"], asked if k == 2 else tok.mask_id] for k, e in enumerate(events)])
    term = repeats.repeat_term(
        bias, layout, ids[None], torch.tensor([0]), torch.tensor([2]), causal=True, num_items=tok.num_items
    )
    scores = term.add_to(torch.zeros(1, tok.num_items))[0]
    q = 1 + tok.spec.actions.index("purchase")
    a_view, a_cart = 1 + tok.spec.actions.index("view"), 1 + tok.spec.actions.index("cart")
    index = lambda name: item(name) - tok.item_offset  # noqa: E731
    # "a": the last event (distance 0, bucket 0) and two events back (distance 2, bucket 1), both views: the
    # larger of the two
    g = 1 + 3  # the asked event's gap: <next:t:3>
    assert scores[index("a")] == max(bias[q, g, a_view, 0], bias[q, g, a_view, 1])
    assert scores[index("b")] == bias[q, g, a_cart, 1]
    assert scores[index("c")] == 0
    # another gap to the asked event reads another cell; an unknown gap ([MASK]) reads the pooled cell 0
    for next_time, cell in ((tok.vocab["<next:t:0>"], 1), (tok.mask_id, 0)):
        other = ids.clone()
        other[2, 3] = next_time
        term = repeats.repeat_term(
            bias, layout, other[None], torch.tensor([0]), torch.tensor([2]), causal=True, num_items=tok.num_items
        )
        assert term.add_to(torch.zeros(1, tok.num_items))[0, index("b")] == bias[q, cell, a_cart, 1]
    # a masked model predicts the event at the position: only earlier events count, one step closer
    masked = ids[:, :3].clone()
    masked[2, 2], masked[2, 1] = tok.mask_id, tok.vocab["<a:purchase>"]
    term = repeats.repeat_term(
        bias, layout, masked[None], torch.tensor([0]), torch.tensor([2]), causal=False, num_items=tok.num_items
    )
    scores = term.add_to(torch.zeros(1, tok.num_items))[0]
    assert scores[index("a")] == bias[q, g, a_view, 1] and scores[index("b")] == bias[q, g, a_cart, 0]


def test_repeat_table_trains_and_is_refused_where_it_cannot_apply(tok, small_sequences):
    layout = TokenLayout.from_tokenizer(tok)
    model = build_model(
        model_type="gpt2", vocab_size=tok.vocab_size, max_positions=16, hidden_size=16, num_layers=1, num_heads=1
    )
    windows = tok.encode_training_windows(small_sequences, min_events=2)
    table = repeats.attach(model, layout, windows, gated=True)
    # the gate starts at the log's share of next items already in their window: u1 repeats a and b, 2 of 7
    assert float(torch.sigmoid(repeats.gate_of(model).detach()).flatten()[0]) == pytest.approx(2 / 7)
    loss_module = ItemLoss(model, item_offset=tok.item_offset, num_items=tok.num_items, layout=layout)
    batch = pad_sequences(tok.encode_training_windows(small_sequences, min_events=2), tok.pad_id)
    inputs, labels = stacked.next_event_batch(
        batch["input_ids"],
        batch["attention_mask"],
        layout,
        hide_action_prob=0.0,
        noise=torch.rand(*batch["attention_mask"].shape, 2),
    )
    loss_module(inputs, batch["attention_mask"], labels).backward()
    assert table.grad is not None and table.grad.abs().sum() > 0  # u1 repeats "a" and "b": the table learns
    assert repeats.gate_of(model).grad.abs().sum() > 0  # and so does the gate
    with pytest.raises(ValueError, match="full softmax only"):
        ItemLoss(
            model,
            item_offset=tok.item_offset,
            num_items=tok.num_items,
            layout=layout,
            item_log_frequency=torch.zeros(tok.num_items),
            num_uniform_negatives=4,
        )
    legacy = TokenLayout.from_tokenizer(EventTokenizer.build(small_sequences, layout="time action item"))
    with pytest.raises(ValueError, match="one position per event"):
        repeats.attach(
            build_model(model_type="gpt2", vocab_size=64, max_positions=8, hidden_size=8, num_layers=1, num_heads=1),
            legacy,
        )


def test_initial_repeat_table_is_the_logs_own_repeat_rate(tok):
    """A log where every view is followed by a cart of the same item: that cell starts at log(P * items), a
    never-seen cell at 0, and a repeat that never happens below chance."""
    layout = TokenLayout.from_tokenizer(tok)
    view, cart = tok.vocab["<a:view>"], tok.vocab["<a:cart>"]
    gap_of = {view: tok.vocab["<t:3>"], cart: tok.vocab["<t:1>"]}  # carts follow their view within seconds
    items = [tok.vocab[f"<i:{name}>"] for name in ("a", "b", "c")]
    window = np.array([[gap_of[action], action, item] for item in items * 20 for action in (view, cart)])
    table = repeats.initial_table([window], layout)
    q_cart, a_view, a_cart = (1 + tok.spec.actions.index(a) for a in ("cart", "view", "cart"))
    short, long = 1 + 1, 1 + 3
    hits = 60  # each of the 60 views is followed by its cart
    expected = pytest.approx(np.log((hits + 1) / (hits + 2) * tok.num_items))
    # asked cart, a short gap, or both: each known detail and its pooled "not known" cell see the same repeats
    assert table[q_cart, short, a_view, 0] == expected
    assert table[q_cart, 0, a_view, 0] == expected and table[0, short, a_view, 0] == expected
    assert table[q_cart, long, a_view, 0] == 0  # no cart ever came after a long gap: no bonus
    assert table[0, long, a_cart, 0] < np.log(tok.num_items * 0.05)  # after a cart comes another item
    assert table[1 + tok.spec.actions.index("purchase")].sum() == 0  # nothing asked "purchase": no bonus


def test_repeat_bonus_is_each_items_largest_occurrence():
    generator = torch.Generator().manual_seed(0)
    n, length, num_items = 32, 30, 20
    items = torch.randint(num_items, (n, length), generator=generator)
    values = torch.randn(n, length, generator=generator)
    valid = torch.rand(n, length, generator=generator) < 0.8
    scores = repeats.RepeatScores(items, values, valid).add_to(torch.zeros(n, num_items))
    expected = torch.zeros(n, num_items)
    for row in range(n):
        best = {}
        for k in range(length):
            if valid[row, k]:
                best[int(items[row, k])] = max(best.get(int(items[row, k]), -np.inf), float(values[row, k]))
        for item, value in best.items():
            expected[row, item] = value
    torch.testing.assert_close(scores, expected)


def test_item_rows_from_transitions_rank_each_items_successor_first(tok):
    """A cycle a -> b -> c -> a: after factorising its transitions, input(x) . output(y) is largest for the
    successor of x, before any training; a tied model is refused."""
    from bertrec.item_init import init_from_transitions, transition_factors

    layout = TokenLayout.from_tokenizer(tok)
    t, view = tok.vocab["<t:3>"], tok.vocab["<a:view>"]
    names = ["a", "b", "c"]
    window = np.array([[t, view, tok.vocab[f"<i:{names[k % 3]}>"]] for k in range(30)])
    inputs, outputs = transition_factors([window], layout, dim=4)
    successor = {
        tok.vocab[f"<i:{n}>"] - tok.item_offset: tok.vocab[f"<i:{names[(k + 1) % 3]}>"] - tok.item_offset
        for k, n in enumerate(names)
    }
    for item, following in successor.items():
        assert int((inputs[item] @ outputs.T).argmax()) == following
    model = build_model(
        model_type="gpt2",
        vocab_size=tok.vocab_size,
        max_positions=16,
        hidden_size=8,
        num_layers=1,
        num_heads=1,
        tie_embeddings=False,
    )
    init_from_transitions(model, [window], layout)
    rows = slice(tok.item_offset, tok.item_offset + tok.num_items)
    scores = model.get_input_embeddings().weight[rows] @ model.get_output_embeddings().weight[rows].T
    assert all(int(scores[item].argmax()) == following for item, following in successor.items())
    tied = build_model(
        model_type="gpt2", vocab_size=tok.vocab_size, max_positions=16, hidden_size=8, num_layers=1, num_heads=1
    )
    with pytest.raises(ValueError, match="untied"):
        init_from_transitions(tied, [window], layout)


def test_gated_repeat_scores_are_a_mixture_of_the_history_and_the_model():
    """With a gate, scores are log-probabilities: gate x (softmax of the values over the history's events,
    summed per item) + (1 - gate) x softmax(logits); a history without events keeps the model's softmax."""
    generator = torch.Generator().manual_seed(0)
    n, length, num_items = 3, 4, 6
    logits = torch.randn(n, num_items, generator=generator)
    items = torch.tensor([[1, 2, 1, 0], [3, 3, 3, 3], [0, 0, 0, 0]])
    values = torch.randn(n, length, generator=generator)
    valid = torch.tensor([[True, True, True, False], [True, True, False, False], [False] * 4])
    gate_logit = torch.tensor([0.5, -1.0, 2.0])
    scores = repeats.RepeatScores(items, values, valid, gate_logit).combine(logits)
    torch.testing.assert_close(scores.exp().sum(dim=1), torch.ones(n))
    gate = torch.sigmoid(gate_logit)
    explore = torch.softmax(logits, dim=1)
    shares = torch.softmax(values[0, :3], dim=0)  # row 0: item 1 twice, item 2 once
    expected = (1 - gate[0]) * explore[0]
    expected[1] += gate[0] * (shares[0] + shares[2])
    expected[2] += gate[0] * shares[1]
    torch.testing.assert_close(scores[0].exp(), expected)
    assert scores[1].exp()[3] == pytest.approx(float(gate[1] + (1 - gate[1]) * explore[1, 3]), rel=1e-5)
    torch.testing.assert_close(scores[2], torch.log_softmax(logits[2], dim=0))  # no history: the model alone


@pytest.mark.parametrize("gated", [True, False])
def test_training_reads_the_mixture_at_the_target_only_with_the_dense_value_and_gradient(gated):
    """The loss gathers the target's mixture probability instead of building the dense scores (the 2x
    epoch-time cost); targets in and out of the history, and a row without history, must match combine()."""
    generator = torch.Generator().manual_seed(1)
    n, length, num_items = 4, 5, 7
    items = torch.tensor([[1, 2, 1, 0, 4], [3, 3, 3, 3, 3], [0, 0, 0, 0, 0], [5, 6, 5, 6, 0]])
    valid = torch.tensor([[True, True, True, False, True], [True, True, False, False, False], [False] * 5, [True] * 5])
    targets = torch.tensor([1, 2, 0, 6])  # in history, not in history, no history, twice in history
    dense_inputs = [torch.randn(n, num_items, generator=generator), torch.randn(n, length, generator=generator)]
    gate_logit = torch.tensor([0.5, -1.0, 2.0, 0.0]) if gated else None
    losses, gradients = [], []
    for path in ("dense", "target"):
        logits, values = (tensor.clone().requires_grad_() for tensor in dense_inputs)
        scores = repeats.RepeatScores(items, values, valid, gate_logit)
        if path == "dense":
            loss = torch.nn.functional.cross_entropy(scores.combine(logits), targets)
        else:
            loss = -scores.target_log_prob(logits, targets).mean()
        loss.backward()
        losses.append(loss.detach())
        gradients.append((logits.grad, values.grad))
    torch.testing.assert_close(losses[0], losses[1])
    for dense, target in zip(*gradients):
        torch.testing.assert_close(dense, target)
