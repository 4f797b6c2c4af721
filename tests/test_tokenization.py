import json

import numpy as np
import polars as pl
import pytest

from bertrec import tokenization
from bertrec.tokenization import (
    FIRST_EVENT_BUCKET,
    SPECIAL_TOKENS,
    EventTokenizer,
    EventTokenizerSpec,
    action_token,
    item_token,
)
from tests.conftest import run_without_bertrec


def test_vocabulary_order_and_frequency(small_sequences):
    tok = EventTokenizer.build(small_sequences)
    inverse = tok.inverse_vocab
    assert inverse[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert inverse[tok.action_offset : tok.action_offset + 3] == [action_token(a) for a in ("cart", "purchase", "view")]
    # items most frequent first: a x4, b x4 (tie broken by id), c x2
    assert tok.spec.items == ["a", "b", "c"]
    assert inverse[tok.item_offset :] == [item_token(i) for i in ("a", "b", "c")]


def test_min_count_and_unknown_items(small_sequences):
    tok = EventTokenizer.build(small_sequences, min_item_count=3)
    assert tok.spec.items == ["a", "b"]
    assert tok.item_indices(pl.Series(["c", "a", "zzz"])).tolist() == [-1, 0, -1]
    ids = tok.encode_sequences(small_sequences.filter(pl.col("user_id") == "u2"))[0]
    assert ids[-4] == tok.unk_item_id  # u2's second event is item c


def test_time_buckets():
    tok = EventTokenizer.build(
        pl.DataFrame({"item_id": [["a"]], "action": [["v"]], "timestamp": [[0.0]]}), time_boundaries=[10, 100]
    )
    ids = tok.time_bucket_ids(np.array([np.nan, 0, 9.9, 10, 99, 1e9]))
    first = tok.token_id(FIRST_EVENT_BUCKET)
    assert ids.tolist() == [first, first + 1, first + 1, first + 2, first + 2, first + 3]
    with pytest.raises(ValueError, match="strictly increasing"):
        EventTokenizer.build(
            pl.DataFrame({"item_id": [["a"]], "action": [["v"]], "timestamp": [[0.0]]}),
            time_boundaries=[5, 1],
        )


@pytest.mark.parametrize("layout", ["item", "action item", "time item", "time action item"])
def test_max_length_counts_events_whatever_the_layout(small_sequences, layout):
    tok = EventTokenizer.build(small_sequences, layout=layout, max_events=3)
    encoded = tok.encode_sequences(small_sequences)
    per_event = len(layout.split())
    assert [len(e) // per_event for e in encoded] == [3, 3, 2]  # u1 and u2 truncated to 3 events; u3 has 2
    windows = tok.encode_training_windows(small_sequences, min_events=2)
    # u1 has 5 events -> windows of 3 and 2 (from the end); u2 one of 3; u3 one of 2
    assert sorted(len(w) // len(layout.split()) for w in windows) == [2, 2, 3, 3]


def test_bulk_ids_equal_text_form_through_plain_autotokenizer(small_sequences, tmp_path):
    tok = EventTokenizer.build(small_sequences, min_item_count=3)
    tok.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    bulk = [e.tolist() for e in tok.encode_sequences(small_sequences)]
    texts = [
        tok.history_to_text(r["item_id"], r["action"], r["timestamp"]) for r in small_sequences.iter_rows(named=True)
    ]
    result = run_without_bertrec(
        f"""
        import json
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(tmp_path)!r})
        print(json.dumps([tok(t, add_special_tokens=False)["input_ids"] for t in {texts!r}]))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == bulk


def test_save_load_round_trip(small_sequences, tmp_path):
    tok = EventTokenizer.build(small_sequences, layout="action item", max_events=7)
    tok.save(tmp_path)
    loaded = EventTokenizer.load(tmp_path)
    assert loaded.vocab == tok.vocab and loaded.spec == tok.spec
    (tmp_path / "event_tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupted"):
        EventTokenizer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a bertrec tokenizer"):
        EventTokenizer.load(tmp_path / "missing")


def test_item_ids_with_spaces_survive_text_form(tmp_path):
    seqs = pl.DataFrame({"item_id": [["sku 1", "50%off"]], "action": [["view", "view"]], "timestamp": [[0.0, 1.0]]})
    tok = EventTokenizer.build(seqs, layout="item")
    text = tok.history_to_text(["sku 1", "50%off"], ["view", "view"], [0.0, 1.0])
    assert text.split() == [item_token("sku 1"), item_token("50%off")]
    assert tok.hf_tokenizer()(text, add_special_tokens=False)["input_ids"] == tok.encode_sequences(seqs)[0].tolist()


def test_time_layout_needs_timestamps():
    seqs = pl.DataFrame(
        {"item_id": [["a", "b"]], "action": [["v", "v"]], "timestamp": [[None, None]]},
        schema={
            "item_id": pl.List(pl.String),
            "action": pl.List(pl.String),
            "timestamp": pl.List(pl.Float64),
        },
    )
    with pytest.raises(ValueError, match="needs a timestamp"):
        EventTokenizer.build(seqs, layout="time action item")
    assert EventTokenizer.build(seqs, layout="action item").num_items == 2


def _fake_hash(values: dict[str, int]):
    def hash(self, *args, **kwargs):
        return pl.Series(self.name, [values.get(v, 99) for v in self.to_list()], dtype=pl.UInt64)

    return hash


def test_item_lookup_by_hash_is_exact_when_an_unknown_id_collides(monkeypatch):
    """An id outside the vocabulary whose hash equals a vocabulary item's is still unknown (-1); when two
    vocabulary items share a hash, the lookup joins on strings instead."""
    ids = pl.Series(["a", "zzz", "b", None, "c"])
    monkeypatch.setattr(pl.Series, "hash", _fake_hash({"a": 1, "b": 2, "zzz": 1, "c": 3}))
    spec = EventTokenizerSpec("item", [1.0], ["view"], ["a", "b"], 8)
    assert EventTokenizer(spec).item_indices(ids).tolist() == [0, -1, 1, -1, -1]
    monkeypatch.setattr(pl.Series, "hash", _fake_hash({"a": 1, "b": 1}))
    assert EventTokenizer(spec).item_indices(ids).tolist() == [0, -1, 1, -1, -1]


def test_event_token_ids_are_the_same_encoded_in_chunks(monkeypatch):
    from bertrec.data.sequences import build_sequences
    from bertrec.data.synthetic import SyntheticShopConfig, generate_shop_log

    sequences = build_sequences(generate_shop_log(SyntheticShopConfig(n_users=60, n_items=80)))
    tokenizer = EventTokenizer.build(sequences, layout="time action item")
    whole, lengths = tokenizer.event_token_ids(sequences)
    monkeypatch.setattr(tokenization, "_EVENTS_PER_CHUNK", 37)  # many chunks, cut between sequences
    chunked, chunked_lengths = tokenizer.event_token_ids(sequences)
    assert np.array_equal(whole, chunked) and np.array_equal(lengths, chunked_lengths)
    assert len(whole) > 37 * 10
