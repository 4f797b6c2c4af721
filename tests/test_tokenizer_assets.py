"""The committed tokenizer of the built-in dataset is exactly what the rebuild recipe produces."""

import json
from pathlib import Path

from bertrec.args import TokenizerArguments
from bertrec.recipes.build_tokenizer_assets import DEFAULT_ASSETS, main
from bertrec.tokenization import EventTokenizer

COMMITTED = Path(__file__).parents[1] / DEFAULT_ASSETS


def test_rebuild_gives_identical_tokens_and_ids(tmp_path):
    main(["--output_dir", str(tmp_path / "rebuilt")])
    rebuilt, committed = EventTokenizer.load(tmp_path / "rebuilt"), EventTokenizer.load(COMMITTED)
    assert rebuilt.vocab == committed.vocab  # same tokens with the same ids
    assert rebuilt.spec == committed.spec
    for name in ("tokenizer.json", "event_tokenizer.json"):
        assert json.loads((tmp_path / "rebuilt" / name).read_text()) == json.loads((COMMITTED / name).read_text())


def test_committed_tokenizer_covers_the_built_in_catalogue():
    tokenizer = EventTokenizer.load(COMMITTED)
    # the default layout; its vocabulary adds the next-event tokens (<next:a:...>, <next:t:...>) to the others'
    assert tokenizer.spec.layout == TokenizerArguments().layout == "time+action+item"
    assert "<next:a:purchase>" in tokenizer.vocab and "<next:t:0>" in tokenizer.vocab
    assert set(tokenizer.spec.actions) == {"view", "cart", "purchase"}
    assert tokenizer.num_items > 1000
