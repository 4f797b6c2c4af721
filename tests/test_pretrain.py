"""The pretraining recipe end to end, and what its output folder promises to downstream code."""

import json
import shutil

import pytest
import torch
import yaml

from bertrec.args import DataArguments, EvalArguments, ModelArguments, TokenizerArguments, parse_args
from bertrec.evaluation import _batches, encode_prompts, prompt_features
from bertrec.modeling import ARCHITECTURES, item_logits, load_model
from bertrec.recipes.common import CONFIG_FILE
from bertrec.recipes.prepare import load_split
from bertrec.recipes.pretrain import ARGUMENTS
from bertrec.tokenization import EventTokenizer
from bertrec.training import TrainingArguments
from tests.conftest import TINY_PRETRAIN, run_without_bertrec


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "bert-generation"])
def test_output_folder_and_metrics(pretrained, model_type):
    run = pretrained[model_type]
    folder = run["dir"]
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "event_tokenizer.json",
        "bertrec_config.yaml",
        "cleaning_report.json",
        "metrics.json",
    ):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    for part in ("valid", "test"):
        assert {"ndcg@10", "hr@10", "mrr@10", "ndcg@50"} <= set(metrics[part])
    assert {"test", "valid"} <= set(metrics["baselines"]["popularity"])
    assert "markov" in metrics["baselines"]
    history = [h["ndcg@10"] for h in metrics["training"]["history"]]
    assert max(history) > history[0]  # validation improved while training
    if model_type != "bert":  # next-event training learns the synthetic transitions within a few tiny epochs
        assert metrics["test"]["ndcg@10"] > 1.5 * metrics["baselines"]["popularity"]["test"]["ndcg@10"]
    report = json.loads((folder / "cleaning_report.json").read_text())
    assert report["input_rows"] == report["output_rows"] + sum(report["dropped"].values())


def test_saved_config_reproduces_the_arguments(pretrained):
    folder = pretrained["gpt2"]["dir"]
    parsed = parse_args(ARGUMENTS, ["--config", str(folder / "bertrec_config.yaml")])
    saved = yaml.safe_load((folder / "bertrec_config.yaml").read_text())
    assert parsed[2].model_type == "gpt2" and parsed[3].output_dir == saved["output_dir"]
    assert parsed[0].synthetic_users == 400 and parsed[1].max_events == 20


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "bert-generation"])
def test_plain_transformers_reproduce_bertrec_scores(pretrained, model_type, tmp_path):
    """AutoTokenizer + AutoModelFor*LM, without bertrec importable, give bertrec's own item logits exactly: each
    event's tokens looked up and summed as ``inputs_embeds`` (the default stacked layout). The repeat bonus on
    top is checked against the model card's snippet in ``tests/test_hub.py``."""
    folder = pretrained[model_type]["dir"]
    tokenizer = EventTokenizer.load(folder)
    model = load_model(str(folder)).eval()
    split = load_split_from_run(folder)
    examples = split.test.head(16)
    prompts = encode_prompts(tokenizer, examples, "masked" if model_type == "bert" else "next")
    rows = [[[tokenizer.inverse_vocab[i] for i in event] for event in prompt.tolist()] for prompt in prompts]
    batch = next(_batches(tokenizer, examples, prompts, batch_size=16))
    features = prompt_features(model, batch.input_ids, batch.attention_mask)
    logits = item_logits(model, features, tokenizer.item_offset, tokenizer.num_items).detach()
    torch.save({"logits": logits, "rows": rows}, tmp_path / "expected.pt")
    auto = "AutoModelForMaskedLM" if model_type == "bert" else "AutoModelForCausalLM"
    result = run_without_bertrec(
        f"""
        import torch
        from transformers import AutoModel, AutoTokenizer, {auto} as Auto
        expected = torch.load("expected.pt")
        tok = AutoTokenizer.from_pretrained({str(folder)!r})
        model = Auto.from_pretrained({str(folder)!r}).eval()
        items = sorted(i for t, i in tok.get_vocab().items() if t.startswith("<i:"))
        worst, same_topk = 0.0, True
        for rows, want in zip(expected["rows"], expected["logits"]):
            ids = torch.tensor([tok.convert_tokens_to_ids(row) for row in rows])[None]
            with torch.no_grad():
                logits = model(inputs_embeds=model.get_input_embeddings()(ids).sum(dim=2)).logits[0, -1, items]
            worst = max(worst, (logits - want).abs().max().item())
            same_topk &= torch.equal(logits.topk(10).indices, want.topk(10).indices)
        base = AutoModel.from_pretrained({str(folder)!r})
        ids = torch.tensor([tok.convert_tokens_to_ids(row) for row in expected["rows"][0]])[None]
        hidden = base(inputs_embeds=base.get_input_embeddings()(ids).sum(dim=2))
        print(worst, same_topk, tuple(hidden.last_hidden_state.shape))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    worst, same_topk, shape = result.stdout.strip().splitlines()[-1].split(" ", 2)
    assert float(worst) < 1e-5 and same_topk == "True"
    assert eval(shape)[2] == model.config.hidden_size


def load_split_from_run(folder):
    from bertrec.recipes.common import prepare_data

    saved = yaml.safe_load((folder / "bertrec_config.yaml").read_text())
    return prepare_data(
        DataArguments(**{k: v for k, v in saved.items() if k in DataArguments.__dataclass_fields__})
    ).split


def test_evaluate_recipe_matches_training_metrics(pretrained, tmp_path):
    from bertrec.recipes.evaluate import main as evaluate_main
    from bertrec.recipes.prepare import main as prepare_main

    folder = pretrained["bert"]["dir"]
    prepare_main(["--synthetic_users", "400", "--output_dir", str(tmp_path / "split")])
    assert load_split(tmp_path / "split").test.height > 0
    rows = evaluate_main(
        [
            "--model_dir",
            str(folder),
            "--split_dir",
            str(tmp_path / "split"),
            "--output_file",
            str(tmp_path / "eval.json"),
        ]
    )
    expected = pretrained["bert"]["metrics"]
    assert rows["model"]["ndcg@10"] == pytest.approx(expected["test"]["ndcg@10"], abs=1e-6)
    assert rows["popularity"]["ndcg@10"] == pytest.approx(expected["baselines"]["popularity"]["test"]["ndcg@10"])
    assert json.loads((tmp_path / "eval.json").read_text())["model"]["users"] == expected["test"]["users"]


def test_every_shipped_config_parses():
    from pathlib import Path

    from bertrec.recipes.finetune import ARGUMENTS as FINETUNE_ARGUMENTS

    configs = sorted(Path(__file__).parents[1].glob("recipes/configs/**/*.yaml"))
    assert any(c.name.startswith("finetune_") for c in configs)
    for config in configs:
        if config.name.startswith("finetune_"):
            finetune, data, train, *_ = parse_args(FINETUNE_ARGUMENTS, ["--config", str(config)])
            assert finetune.method in {"lora", "full", "none"} and isinstance(train, TrainingArguments)
            continue
        data, tok, model, train, evaluation, hub = parse_args(ARGUMENTS, ["--config", str(config)])
        assert isinstance(train, TrainingArguments) and model.model_type in ARCHITECTURES


def test_command_line_overrides_yaml_and_unknown_keys_fail(tmp_path):
    from bertrec.args import ConfigError

    config = tmp_path / "c.yaml"
    config.write_text("hidden_size: 48\nnum_heads: 4\n")
    _, _, model, _, _, _ = parse_args(ARGUMENTS, ["--config", str(config), "--hidden_size", "96"])
    assert (model.hidden_size, model.num_heads) == (96, 4)
    config.write_text("hiden_size: 48\n")
    with pytest.raises(ConfigError, match="did you mean 'hidden_size'"):
        parse_args(ARGUMENTS, ["--config", str(config)])
    with pytest.raises(ConfigError, match="'--hiden_size' \\(did you mean '--hidden_size'"):
        parse_args((ModelArguments, TokenizerArguments, EvalArguments), ["--hiden_size", "1"])


@pytest.mark.slow  # about two minutes of compiling on 2 CPU cores
def test_torch_compile_trains_like_eager(tmp_path):
    from bertrec.recipes.pretrain import main

    args = [*TINY_PRETRAIN, "--model_type", "gpt2", "--num_epochs", "2", "--dropout", "0"]
    eager = main([*args, "--output_dir", str(tmp_path / "eager")])
    compiled = main([*args, "--torch_compile", "true", "--output_dir", str(tmp_path / "compiled")])
    assert compiled["valid"]["ndcg@10"] == pytest.approx(eager["valid"]["ndcg@10"], abs=0.01)


def test_same_seed_and_data_give_identical_metrics_and_weights(pretrained, tmp_path):
    """Determinism on CPU: a second run of the session's GPT-2 configuration reproduces it exactly."""
    from safetensors.torch import load_file

    from bertrec.recipes.pretrain import main

    first = pretrained["gpt2"]
    again = main([*TINY_PRETRAIN, "--model_type", "gpt2", "--output_dir", str(tmp_path / "again")])
    for part in ("valid", "test"):
        assert again[part] == first["metrics"][part], part
    curve = [h["ndcg@10"] for h in again["training"]["history"]]
    assert curve == [h["ndcg@10"] for h in first["metrics"]["training"]["history"]]
    weights, expected = (
        load_file(tmp_path / "again" / "model.safetensors"),
        load_file(first["dir"] / "model.safetensors"),
    )
    assert all(torch.equal(weights[name], expected[name]) for name in expected)
    changed = _first_epoch(["--seed", "7"], tmp_path / "seed7")
    assert changed != curve[0]  # the seed really is what fixes the run


def _first_epoch(flags: list[str], folder) -> float:
    """Validation NDCG@10 after the first epoch of the shared gpt2 configuration with ``flags``: the time budget
    stops it there, on the same learning-rate schedule as the full run, so it compares with the shared run's
    first point at a quarter of the cost."""
    from bertrec.recipes.pretrain import main

    args = [*TINY_PRETRAIN, "--model_type", "gpt2", *flags, "--max_train_seconds", "1e-6"]
    run = main([*args, "--output_dir", str(folder)])
    assert run["training"]["stopped_by"] == "time budget"
    return run["training"]["history"][0]["ndcg@10"]


def _trained_with(pretrained, folder, flag: str, value: str):
    """A gpt2 run with one loss flag: its first validation differs from the shared run's (the flag reached the
    loss), and the flag is saved in its config, which is returned."""
    shared = pretrained["gpt2"]["metrics"]["training"]["history"][0]["ndcg@10"]
    assert _first_epoch([f"--{flag}", value], folder) != shared
    return yaml.safe_load((folder / CONFIG_FILE).read_text())


def test_loss_excluding_seen_items_reaches_training(pretrained, tmp_path):
    """The flag changes the loss the model trains on (the arithmetic is tested in test_losses), and is saved."""
    assert _trained_with(pretrained, tmp_path / "excluding", "loss_excludes_seen", "true")["loss_excludes_seen"]


def test_final_fit_trains_on_validation_targets_for_all_epochs_and_keeps_the_last(pretrained, tmp_path):
    """--train_on_validation: nothing is validated (patience is moot), every epoch runs, the saved model is the
    last epoch's, only test metrics are reported, and items first seen as validation targets get tokens."""
    from safetensors.torch import load_file

    from bertrec.recipes.pretrain import main

    folder = tmp_path / "final"
    metrics = main([*TINY_PRETRAIN, "--model_type", "gpt2", "--num_epochs", "3", "--early_stopping_patience", "1",
                    "--train_on_validation", "true", "--output_dir", str(folder)])  # fmt: skip
    training = metrics["training"]
    assert "valid" not in metrics and "test" in metrics and "valid" not in metrics["baselines"]["markov"]
    assert training["epochs_run"] == 3 and training["stopped_by"] == "epochs"
    assert training["best_valid_ndcg@10"] is None and training["best_step"] == training["steps"]
    assert all("ndcg@10" not in h for h in training["history"])
    assert metrics["data"]["validation_targets_trained"] == metrics["data"]["evaluated_users"] > 0
    assert "A final fit (`--train_on_validation`)" in (folder / "README.md").read_text()  # the card says so
    last = load_file(folder / "checkpoints" / f"checkpoint-{training['steps']}" / "model.safetensors")
    saved = load_file(folder / "model.safetensors")
    assert all(torch.equal(saved[name], last[f"model.{name}"]) for name in saved)
    validated = EventTokenizer.load(pretrained["gpt2"]["dir"])
    assert EventTokenizer.load(folder).num_items > validated.num_items


def test_time_budget_stops_at_a_validation_and_a_resumed_run_continues(pretrained, tmp_path):
    """Past --max_train_seconds training stops at the next validation with its best weights; resuming with a
    larger budget trains on, to the same weights as the run that never stopped (the budget is not in the state)."""
    from safetensors.torch import load_file

    from bertrec.recipes.pretrain import main

    folder = tmp_path / "budget"
    args = [*TINY_PRETRAIN, "--model_type", "gpt2", "--output_dir", str(folder)]
    stopped = main([*args, "--max_train_seconds", "1e-6"])
    assert stopped["training"]["epochs_run"] == 1 and stopped["training"]["stopped_by"] == "time budget"
    resumed = main([*args, "--resume_from_checkpoint", "latest"])
    epochs = int(TINY_PRETRAIN[TINY_PRETRAIN.index("--num_epochs") + 1])
    assert resumed["training"]["epochs_run"] == epochs and resumed["training"]["stopped_by"] == "epochs"
    assert resumed["test"] == pretrained["gpt2"]["metrics"]["test"]
    weights, expected = (
        load_file(folder / "model.safetensors"),
        load_file(pretrained["gpt2"]["dir"] / "model.safetensors"),
    )
    assert all(torch.equal(weights[name], expected[name]) for name in expected)


def test_max_steps_ends_the_schedule_inside_an_epoch_and_validates_there(tmp_path):
    """--max_steps (transformers' meaning): training stops at that optimizer step, mid-epoch, validates there
    and keeps that model; the learning-rate schedule ends at the same step."""
    from bertrec.recipes.pretrain import main

    run = main([*TINY_PRETRAIN, "--model_type", "gpt2", "--max_steps", "3", "--output_dir", str(tmp_path / "steps")])
    training = run["training"]
    assert training["steps"] == 3 and training["stopped_by"] == "max steps" and training["epochs_run"] == 0
    assert [h["step"] for h in training["history"]] == [3] and training["best_step"] == 3


def test_cosine_temperature_trains_unit_item_embeddings_that_are_saved(pretrained, tmp_path):
    """--logit_temperature changes what the model learns and leaves unit-norm item rows in the saved model."""
    folder = tmp_path / "cosine"
    assert _trained_with(pretrained, folder, "logit_temperature", "0.1")["logit_temperature"] == 0.1
    tokenizer = EventTokenizer.load(folder)
    rows = load_model(str(folder)).get_output_embeddings().weight[tokenizer.item_offset :][: tokenizer.num_items]
    assert torch.allclose(rows.norm(dim=1), torch.ones(tokenizer.num_items), atol=1e-5)


def test_defaults_follow_whether_rankings_exclude_seen_items(pretrained, tmp_path):
    """Repeat scores rank only the user's own items: with --exclude_seen the default leaves them out (saved as
    such), while the shared run (seen items kept) has them in its stock config.json. The loss leaves the seen
    items out exactly when the ranking does and no repeat scores are asked for."""
    defaults = parse_args(ARGUMENTS, [])[2]
    assert defaults.repeat_scores is None and defaults.loss_excludes_seen is None  # resolved by the recipe
    assert "repeat_bias" in json.loads((pretrained["gpt2"]["dir"] / "config.json").read_text())
    assert yaml.safe_load((pretrained["gpt2"]["dir"] / CONFIG_FILE).read_text())["loss_excludes_seen"] is False
    folder = tmp_path / "excluding"
    _first_epoch(["--exclude_seen", "true"], folder)
    assert "repeat_bias" not in json.loads((folder / "config.json").read_text())
    saved = yaml.safe_load((folder / CONFIG_FILE).read_text())
    assert saved["repeat_scores"] is False and saved["loss_excludes_seen"] is True
    _first_epoch(["--exclude_seen", "true", "--repeat_scores", "true"], tmp_path / "repeats")
    assert yaml.safe_load((tmp_path / "repeats" / CONFIG_FILE).read_text())["loss_excludes_seen"] is False


def test_an_output_dir_that_is_a_file_is_a_clear_error(tmp_path):
    from bertrec.args import ConfigError
    from bertrec.recipes.prepare import main as prepare
    from bertrec.recipes.pretrain import main as pretrain

    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    for recipe in (pretrain, prepare):
        with pytest.raises(ConfigError, match=f"--output_dir {taken} is a file; give the path of a folder"):
            recipe(["--output_dir", str(taken)])


def test_the_first_names_import_from_the_package_root():
    """``from bertrec import Recommender, pretrain, ...``; and ``import bertrec`` alone loads no torch."""
    import subprocess
    import sys

    import bertrec
    from bertrec import EventTokenizer, Recommender, pretrain, read_events
    from bertrec.data.readers import read_events as reader
    from bertrec.recipes.pretrain import main
    from bertrec.recommend import Recommender as recommender_class
    from bertrec.tokenization import EventTokenizer as tokenizer_class

    assert (Recommender, EventTokenizer, pretrain, read_events) == (recommender_class, tokenizer_class, main, reader)
    assert set(bertrec.__all__) <= set(dir(bertrec))
    with pytest.raises(AttributeError, match="no attribute 'Recomender'"):
        bertrec.Recomender  # noqa: B018
    light = "import sys, bertrec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", light], capture_output=True, text=True).stdout.strip() == "False"


def _scripted_validation(monkeypatch, values: list[float]) -> None:
    """Each validation reports the next of ``values`` as NDCG@10 (the other metrics are real), so a test
    decides where validation stalls."""
    from bertrec import training
    from bertrec.recipes import pretrain

    scripted = iter(values)

    def train(accelerator, loss_module, windows, objective, validate, args):
        def scripted_validate() -> dict:
            return {**validate(), "ndcg@10": next(scripted)}

        return training.train(accelerator, loss_module, windows, objective, scripted_validate, args)

    monkeypatch.setattr(pretrain, "train", train)


def test_a_stalled_validation_anneals_from_the_best_weights_and_a_killed_anneal_resumes(monkeypatch, tmp_path):
    """--anneal_on_plateau: early stopping reloads the best epoch's weights and decays the learning rate over
    whole epochs past --num_epochs, then stops as "annealed"; a run resumed inside the anneal ends where the
    uninterrupted one does."""
    from safetensors.torch import load_file

    from bertrec.recipes.pretrain import main

    folder = tmp_path / "anneal"
    args = [*TINY_PRETRAIN, "--model_type", "gpt2", "--num_epochs", "3", "--early_stopping_patience", "1",
            "--lr_scheduler", "constant_with_warmup", "--anneal_on_plateau", "1.0",
            "--save_total_limit", "10"]  # fmt: skip
    _scripted_validation(monkeypatch, [0.1, 0.2, 0.1, 0.1, 0.3])
    run = main([*args, "--output_dir", str(folder)])["training"]
    per_epoch = run["history"][0]["step"]
    assert run["stopped_by"] == "annealed" and run["epochs_run"] == 5  # two epochs past --num_epochs
    assert [h["ndcg@10"] for h in run["history"]] == [0.1, 0.2, 0.1, 0.1, 0.3]  # patience waits
    assert run["best_step"] == 5 * per_epoch
    assert run["anneal"]["start_step"] == 3 * per_epoch and run["anneal"]["steps"] == 2 * per_epoch
    checkpoints = folder / "checkpoints"
    best, annealing = (load_file(checkpoints / f"checkpoint-{n * per_epoch}" / "model.safetensors") for n in (2, 3))
    assert all(torch.equal(best[name], annealing[name]) for name in best)  # epoch 3's weights were dropped
    third = load_file(checkpoints / f"checkpoint-{3 * per_epoch}" / "model.safetensors")
    fourth = load_file(checkpoints / f"checkpoint-{4 * per_epoch}" / "model.safetensors")
    assert not all(torch.equal(third[name], fourth[name]) for name in third)  # the anneal trains
    final = load_file(folder / "model.safetensors")

    resumed_folder = tmp_path / "resumed"
    resumed_folder.mkdir()
    for n in (1, 2, 3, 4):  # a run killed after the anneal's first epoch
        name = f"checkpoint-{n * per_epoch}"
        shutil.copytree(checkpoints / name, resumed_folder / "checkpoints" / name)
    shutil.copytree(checkpoints / "best", resumed_folder / "checkpoints" / "best")
    _scripted_validation(monkeypatch, [0.3])
    resumed = main([*args, "--output_dir", str(resumed_folder), "--resume_from_checkpoint", "latest"])["training"]
    assert resumed["stopped_by"] == "annealed" and resumed["epochs_run"] == 5
    again = load_file(resumed_folder / "model.safetensors")
    assert all(torch.equal(final[name], again[name]) for name in final)


def test_an_anneal_decays_linearly_from_the_best_step_s_rate_in_every_group():
    """The anneal's learning rate: each group's base rate times the schedule's factor at the best step, falling
    linearly to one step's share at the anneal's last step."""
    from transformers import get_scheduler

    from bertrec.training import _set_annealed_lr

    weights = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.AdamW([{"params": weights[:1]}, {"params": weights[1:], "lr": 0.5}], lr=0.1)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=100)
    state = {"global_step": 40, "anneal": {"start_step": 40, "steps": 4, "factor": 0.8}}
    rates = []
    for step in range(40, 44):
        state["global_step"] = step
        _set_annealed_lr(optimizer, scheduler, state)
        rates += [group["lr"] for group in optimizer.param_groups]
    assert rates == pytest.approx([rate * f for f in (1.0, 0.75, 0.5, 0.25) for rate in (0.08, 0.4)])
