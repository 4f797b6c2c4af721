"""Fine-tuning tasks beyond next purchase: re-ranking, new items; and the recipe's card, push and resume."""

import json
import re
import shutil
import subprocess
import sys
from unittest import mock

import numpy as np
import polars as pl
import pytest
import torch
import torch.nn.functional as F
import yaml
from peft import PeftModel
from safetensors.torch import load_file

from bertrec.args import ConfigError
from bertrec.data.splits import leave_one_out
from bertrec.evaluation import CANDIDATES, EvalBatch, evaluate_scorer
from bertrec.losses import candidate_loss
from bertrec.modeling import build_model, item_logits, load_model
from bertrec.new_items import add_new_items, new_item_ids
from bertrec.recipes.common import CONFIG_FILE
from bertrec.recipes.finetune import main as finetune
from bertrec.tokenization import EventTokenizer
from tests.conftest import TINY_FINETUNE, TINY_PRETRAIN, make_events
from tests.test_pretrain import load_split_from_run

ONE_EPOCH = [*TINY_FINETUNE, "--num_epochs", "1"]


def tiny_bert(vocab_size=60):
    torch.manual_seed(0)
    return build_model(model_type="bert", vocab_size=vocab_size, max_positions=16, hidden_size=8, num_heads=2)


@pytest.mark.parametrize("kind", ["listwise", "bpr"])
def test_candidate_losses_match_their_definitions(kind):
    model, offset, n_items = tiny_bert(), 10, 50
    features, targets = torch.randn(6, 8), torch.tensor([0, 3, 7, 7, 20, 49])
    loss = candidate_loss(
        model,
        features,
        targets,
        offset,
        n_items,
        num_negatives=5,
        kind=kind,
        generator=torch.Generator().manual_seed(1),
    )
    negatives = torch.randint(n_items, (6, 5), generator=torch.Generator().manual_seed(1))
    scores = item_logits(model, features, offset, n_items)
    candidates = torch.cat([targets[:, None], negatives], 1)
    collision = torch.cat([torch.zeros(6, 1, dtype=bool), negatives == targets[:, None]], 1)
    logits = scores.gather(1, candidates).masked_fill(collision, -torch.inf)
    if kind == "listwise":
        expected = F.cross_entropy(logits, torch.zeros(6, dtype=torch.long))
    else:
        diffs = logits[:, 1:] - logits[:, :1]
        expected = F.softplus(diffs[torch.isfinite(diffs)]).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    # with two items every negative may collide with its target: the loss stays finite
    tiny = candidate_loss(model, features, targets % 2, offset, 2, num_negatives=4, kind=kind)
    assert torch.isfinite(tiny)


def test_evaluation_ranks_each_target_among_its_candidates(small_sequences):
    split = leave_one_out(small_sequences)
    tokenizer = EventTokenizer.build(small_sequences, layout="item")
    # u1's test target is "a"; u2 has no test example (3 events: valid + test need 3) -> check what exists
    examples = split.test.with_columns(pl.Series(CANDIDATES, [["c", "a"], ["b", "c"]][: split.test.height]))
    order = {item: i for i, item in enumerate(tokenizer.spec.items)}

    def score(batch: EvalBatch) -> torch.Tensor:  # "c" always best, then "b", then "a"
        scores = torch.zeros(len(batch.targets), tokenizer.num_items)
        for item, value in (("c", 3.0), ("b", 2.0), ("a", 1.0)):
            scores[:, order[item]] = value
        return scores

    metrics = evaluate_scorer(score, tokenizer, examples, ks=(1, 2))
    targets = examples["target_item_id"].to_list()
    value = {"c": 3, "b": 2, "a": 1}
    expected_ranks = [
        sum(value[x] >= value[t] for x in c) if t in c else float("inf") for t, c in zip(targets, examples[CANDIDATES])
    ]
    assert sorted(expected_ranks) == [2, float("inf")]  # the case under test: one ranked second, one missing
    assert metrics["hr@1"] == np.mean([r == 1 for r in expected_ranks])
    assert metrics["hr@2"] == np.mean([r <= 2 for r in expected_ranks])
    assert metrics["targets_not_in_candidates"] == sum(t not in c for t, c in zip(targets, examples[CANDIDATES]))


def test_rerank_recipe_with_a_candidates_file(finetuned, tmp_path):
    base = finetuned["gpt2"]["base"]
    split = load_split_from_run(base)
    items = EventTokenizer.load(base).spec.items
    known = set(items)
    rng = np.random.default_rng(0)
    rows, missing = [], 0
    for part in ("valid", "test"):
        for i, (user, target) in enumerate(getattr(split, part).select("user_id", "target_item_id").iter_rows()):
            others = [items[j] for j in rng.choice(len(items), 12, replace=False) if items[j] != target][:9]
            drop_target = i % 5 == 0  # a retrieval stage that missed the target
            missing += drop_target and part == "test" and target in known  # unknown targets count apart
            rows += [(user, part, item) for item in ([] if drop_target else [target]) + others]
    pl.DataFrame(rows, schema=["user_id", "split", "item_id"], orient="row").write_csv(tmp_path / "cands.csv")
    metrics = finetune(
        [
            "--base_model",
            str(base),
            "--task",
            "rerank",
            "--rerank_loss",
            "bpr",
            "--num_negatives",
            "10",
            "--candidates_file",
            str(tmp_path / "cands.csv"),
            *ONE_EPOCH,
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    test = metrics["test"]
    assert test["targets_not_in_candidates"] == missing
    # 10 candidates: every target that is a candidate ranks within 10
    assert test["hr@10"] == pytest.approx(1 - (missing + test["unknown_targets"]) / test["users"])
    assert test["mrr@10"] < test["hr@10"]
    assert metrics["baselines"]["popularity"]["test"]["hr@10"] == pytest.approx(test["hr@10"])


def test_bad_candidates_file_is_a_clear_error(finetuned, tmp_path):
    (tmp_path / "c.csv").write_text("user,item_id\nu1,i1\n")
    with pytest.raises(Exception, match="missing column.*split.*user_id"):
        finetune(
            [
                "--base_model",
                str(finetuned["gpt2"]["base"]),
                "--task",
                "rerank",
                "--candidates_file",
                str(tmp_path / "c.csv"),
                "--output_dir",
                str(tmp_path / "o"),
            ]
        )


def test_new_item_rows_start_from_co_occurring_items():
    rows = [("u", "a", "v", 1.0), ("u", "new", "v", 2.0), ("u", "b", "v", 3.0), ("w", "lonely", "v", 1.0)]
    from bertrec.data.sequences import build_sequences

    sequences = build_sequences(make_events(rows))
    tokenizer = EventTokenizer.build(
        build_sequences(make_events([("x", "a", "v", 1.0), ("x", "b", "v", 2.0)])), layout="item"
    )
    model = tiny_bert(tokenizer.vocab_size)
    before = model.get_input_embeddings().weight.detach().clone()
    items = new_item_ids(tokenizer, sequences)
    assert items == ["lonely", "new"]  # equal counts: by id
    extended, ids = add_new_items(model, tokenizer, sequences, items, window=1)
    weight = model.get_input_embeddings().weight.detach()
    a, b = (before[tokenizer.token_id(f"<i:{x}>")] for x in "ab")
    assert extended.spec.items[-2:] == items and ids == [tokenizer.vocab_size, tokenizer.vocab_size + 1]
    assert torch.allclose(weight[ids[1]], (a + b) / 2)  # "new" sits between a and b
    known = before[tokenizer.item_offset : tokenizer.vocab_size]
    assert torch.allclose(weight[ids[0]], known.mean(0))  # no known neighbour: the mean item
    assert torch.equal(weight[: tokenizer.vocab_size], before)  # existing rows untouched
    assert model.get_output_embeddings().weight.shape[0] == extended.vocab_size


RENAMED_IN_PERIOD_TWO = {f"i{n:05d}": f"new{n}" for n in range(0, 40, 2)}


def period_two_log(folder) -> str:
    """The synthetic shop log with some items renamed, as a later period that brings new items."""
    from bertrec.data.synthetic import SyntheticShopConfig, generate_shop_log

    log = generate_shop_log(SyntheticShopConfig(n_users=400, seed=0))
    log = log.with_columns(pl.col("item_id").replace(RENAMED_IN_PERIOD_TWO)).drop("category", "event_index")
    log.write_csv(folder / "period2.csv")
    return str(folder / "period2.csv")


def test_new_period_with_new_items_trains_only_their_rows(finetuned, tmp_path):
    """Items renamed in a 'new period' log get tokens; old item rows stay frozen; the adapter reloads."""
    base = finetuned["gpt2"]["base"]
    renamed = RENAMED_IN_PERIOD_TWO
    out = tmp_path / "out"
    metrics = finetune(
        [
            "--base_model",
            str(base),
            "--dataset",
            period_two_log(tmp_path),
            "--new_items",
            "true",
            *ONE_EPOCH,
            "--output_dir",
            str(out),
        ]
    )
    tokenizer, old = EventTokenizer.load(out), EventTokenizer.load(base)
    added = tokenizer.spec.items[old.num_items :]
    assert metrics["finetuning"]["new_items"] == len(added) > 0 and set(added) <= set(renamed.values())
    merged, base_model = load_model(str(out)), load_model(str(base))
    new_rows = merged.get_input_embeddings().weight[old.vocab_size :]
    assert torch.equal(merged.get_input_embeddings().weight[: old.vocab_size], base_model.get_input_embeddings().weight)
    assert new_rows.abs().sum() > 0
    base_model.resize_token_embeddings(tokenizer.vocab_size, mean_resizing=False)
    adapted = PeftModel.from_pretrained(base_model, str(out / "adapter")).eval()
    ids = torch.tensor([[old.vocab_size, 50, old.vocab_size + 1, 60]])
    with torch.no_grad():
        assert torch.allclose(adapted(input_ids=ids).logits, merged.eval()(input_ids=ids).logits, atol=1e-5)


def test_a_base_trained_on_cosine_logits_is_fine_tuned_on_them(tmp_path):
    """The fine-tune inherits the base's --logit_temperature: every item row of the saved model, the new items'
    rows (trained apart in peft's trainable tokens) included, stays at unit norm, so it ranks as trained."""
    from bertrec.recipes.pretrain import main as pretrain

    base, out = tmp_path / "cosine-base", tmp_path / "out"
    pretrain([*TINY_PRETRAIN, "--num_epochs", "2", "--model_type", "gpt2", "--logit_temperature", "0.1",
              "--output_dir", str(base)])  # fmt: skip
    finetune(["--base_model", str(base), "--dataset", period_two_log(tmp_path), "--new_items", "true",
              *ONE_EPOCH, "--output_dir", str(out)])  # fmt: skip
    assert yaml.safe_load((out / CONFIG_FILE).read_text())["logit_temperature"] == 0.1
    tokenizer, old = EventTokenizer.load(out), EventTokenizer.load(base)
    assert tokenizer.num_items > old.num_items  # new items were added and trained
    rows = load_model(str(out)).get_output_embeddings().weight[tokenizer.item_offset :][: tokenizer.num_items]
    assert torch.allclose(rows.norm(dim=1), torch.ones(tokenizer.num_items), atol=1e-5)


def test_card_snippet_runs_and_push_reaches_the_hub_client(finetuned, tmp_path):
    folder = finetuned["bert"]["dir"]
    text = (folder / "README.md").read_text()
    metadata = yaml.safe_load(text.split("---")[1])
    assert metadata["model-index"][0]["results"][0]["task"]["name"] == "next purchase ranking"
    assert "## Fine-tuning" in text and "`adapter/`" in text and "| no fine-tuning |" in text
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "<a:purchase> [MASK]" in snippet
    code = "import sys\nsys.modules['bertrec'] = None\n" + snippet.replace(folder.name, str(folder))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("<i:") == 10
    base = str(finetuned["bert"]["base"])
    with pytest.raises(ConfigError, match="--hub_model_id"):
        finetune(["--base_model", base, "--method", "none", "--push_to_hub", "true", "--output_dir", str(tmp_path)])
    with (
        mock.patch("huggingface_hub.HfApi.create_repo") as create,
        mock.patch("huggingface_hub.HfApi.upload_folder", return_value=mock.Mock(commit_url="u")) as upload,
    ):
        finetune(
            [
                "--base_model",
                base,
                "--method",
                "none",
                "--push_to_hub",
                "true",
                "--hub_model_id",
                "me/shop",
                "--output_dir",
                str(tmp_path / "pushed"),
            ]
        )
    create.assert_called_once_with("me/shop", private=False, exist_ok=True)
    assert upload.call_args.kwargs["folder_path"] == str(tmp_path / "pushed")
    assert (tmp_path / "pushed" / "README.md").is_file() and (tmp_path / "pushed" / "metrics.json").is_file()


def test_resumed_finetune_replays_the_uninterrupted_run(finetuned, tmp_path):
    base = str(finetuned["gpt2"]["base"])
    args = ["--base_model", base, *TINY_FINETUNE, "--num_epochs", "2", "--early_stopping_patience", "0"]
    finetune([*args, "--output_dir", str(tmp_path / "a")])
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "a" / "checkpoints").glob("checkpoint-*"))
    first, last = steps[0], steps[-1]
    resumed = tmp_path / "b" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / f"checkpoint-{first}", resumed / f"checkpoint-{first}")
    finetune([*args, "--output_dir", str(tmp_path / "b"), "--resume_from_checkpoint", "latest"])
    want = load_file(tmp_path / "a" / "checkpoints" / f"checkpoint-{last}" / "model.safetensors")
    got = load_file(resumed / f"checkpoint-{last}" / "model.safetensors")
    assert want.keys() == got.keys() and any("lora" in k for k in want)
    assert all(torch.equal(want[k], got[k]) for k in want)
    state = json.loads((resumed / f"checkpoint-{last}" / "trainer_state.json").read_text())
    assert state["epoch"] == 2


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama", "gpt_neox", "bert-generation"])
def test_lora_defaults_per_architecture_merge_into_the_stock_class(model_type):
    from bertrec.lora import LORA_DEFAULTS, apply_lora, merge, parameter_counts

    torch.manual_seed(0)
    model = build_model(model_type=model_type, vocab_size=500, max_positions=16, hidden_size=16, num_heads=2)
    stock_class = type(model)
    peft = apply_lora(model)
    trainable = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    head = LORA_DEFAULTS[model.config.model_type].head_modules[0]
    assert all("lora_" in n or f"{head}.modules_to_save" in n for n in trainable), sorted(trainable)[:5]
    assert 0 < parameter_counts(peft)["trainable_fraction"] < 0.5
    with torch.no_grad():  # pretend training moved every trainable tensor
        for p in peft.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(10, 500, (2, 8))
    with torch.no_grad():
        expected = peft.eval()(input_ids=ids).logits
        merged = merge(peft).eval()
        assert type(merged) is stock_class
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
    assert merged.get_output_embeddings().weight is merged.get_input_embeddings().weight
    with pytest.raises(ValueError, match="head module 'nope' not found"):
        apply_lora(
            build_model(model_type=model_type, vocab_size=50, max_positions=8, hidden_size=8, num_heads=2),
            head_modules=["nope"],
            target_modules=["x"],
        )
