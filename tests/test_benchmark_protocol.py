"""The pieces of the quality benchmark's protocol that every reported comparison depends on."""

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from bertrec.args import DataArguments, parse_args
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import leave_one_out
from tests.conftest import make_events

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quality_protocol  # noqa: E402


def test_recbole_export_keeps_our_order_and_targets(tmp_path):
    # u1 has tied timestamps: input order must survive, even for the test target
    rows = [("u1", item, "v", 5.0) for item in ["a", "b", "c", "d", "e"]]
    rows += [("u2", item, "v", float(t)) for t, item in enumerate(["x", "a", "x", "b"])]
    split = leave_one_out(build_sequences(make_events(rows)))
    folder = quality_protocol.export_recbole(split, tmp_path / "recbole")
    parts = {
        p: pl.read_csv(folder / f"{p}.inter", separator="\t", schema_overrides={"user_id:token": pl.String})
        for p in ("train", "valid", "test")
    }
    assert parts["train"].columns == ["user_id:token", "item_id:token", "timestamp:float"]
    merged = pl.concat(parts.values()).sort(["user_id:token", "timestamp:float"])
    sequences = merged.group_by("user_id:token", maintain_order=True).agg(pl.col("item_id:token"))
    assert dict(zip(*sequences.to_dict(as_series=False).values())) == {
        "u1": ["a", "b", "c", "d", "e"],
        "u2": ["x", "a", "x", "b"],
    }
    assert parts["valid"].sort("user_id:token")["item_id:token"].to_list() == ["d", "x"]
    assert parts["test"].sort("user_id:token")["item_id:token"].to_list() == ["e", "b"]


def test_paired_test_separates_real_and_null_differences():
    rng = np.random.default_rng(0)
    base = {str(u): float(v) for u, v in enumerate(rng.random(400))}
    same = quality_protocol.paired_test(base, dict(base))
    assert same["p_value"] == 1.0 and same["mean_difference"] == 0.0
    better = {u: v + 0.05 for u, v in base.items()}
    clear = quality_protocol.paired_test(better, base)
    assert clear["p_value"] < 0.001 and clear["mean_difference"] == pytest.approx(0.05)
    noisy = {u: v + rng.normal(0, 0.3) for u, v in base.items()}
    assert quality_protocol.paired_test(noisy, base)["p_value"] > 0.01
    assert quality_protocol.paired_test(better, {"0": 0.0})["users"] == 1  # only users both rows evaluated


def test_data_flags_rebuild_the_same_arguments():
    for name, spec in quality_protocol.DATASETS.items():
        for protocol in ("loo", "temporal", "target", "final"):
            if protocol == "target" and spec.target_action is None:
                continue
            arguments = quality_protocol.data_arguments(spec, Path(f"/data/{name}.parquet"), protocol)
            (parsed,) = parse_args((DataArguments,), quality_protocol.data_flags(arguments))
            assert parsed == arguments


def _row(model, seeds, trials, command):
    tried = [{"config": {"dropout": d}, "valid_ndcg@10": v, "command": command} for d, v in trials]
    chosen = {"dropout": max(trials, key=lambda trial: trial[1])[0]}
    return {"model": model, "seeds": seeds, "config": chosen, "configurations_tried": tried, "command": command}


def test_a_worse_exploration_does_not_replace_the_selected_row():
    import quality

    three_seeds = _row("sasrec", 3, [("0.2", 0.12), ("0.5", 0.11)], "full")
    other_model = {"model": "markov", "command": "baseline"}
    exploration = _row("sasrec", 1, [("0.3", 0.115)], "explore")
    rows, kept = quality.merge_row([other_model, three_seeds], exploration)
    assert kept is three_seeds and [r["model"] for r in rows] == ["markov", "sasrec"]
    # every configuration either command tried stays logged with its command
    assert {(t["config"]["dropout"], t["command"]) for t in kept["configurations_tried"]} == {
        ("0.2", "full"),
        ("0.5", "full"),
        ("0.3", "explore"),
    }
    better = _row("sasrec", 1, [("0.1", 0.13)], "better")
    rows, kept = quality.merge_row(rows, better)
    assert kept is better and len(kept["configurations_tried"]) == 4 and len(rows) == 2
    # on a validation tie the row with more seeds stays; a baseline row is simply replaced
    assert quality.merge_row(rows, _row("sasrec", 3, [("0.1", 0.13)], "seeds"))[1]["seeds"] == 3
    rerun = _row("sasrec", 1, [("0.1", 0.13)], "again")
    assert quality.merge_row(rows, rerun)[1] is rerun  # a full tie: the newest run
    # the same configuration on another seed that happens to validate higher: the three-seed row stays
    three = _row("sasrec", 3, [("0.1", 0.13)], "three")
    rows, _ = quality.merge_row(rows, three)
    lucky_seed = _row("sasrec", 1, [("0.1", 0.14)], "seed 2 alone")
    assert quality.merge_row(rows, lucky_seed)[1] is three
    fresh = {"model": "markov", "command": "new", "configurations_tried": []}
    assert quality.merge_row(rows, fresh)[1] is fresh


def tiny_shop(folder: Path, monkeypatch, **spec_options) -> None:
    """A generated Tmall-format log registered as benchmark dataset ``tiny-shop``: 40 users over 5 days, each
    day 3 brand clicks and a buy of the last one."""
    import quality

    rng = np.random.default_rng(0)
    lines = ["user_id,brand_id,type,visit_datetime"]
    for user in range(40):
        for day in range(1, 6):
            brands = rng.choice(12, size=3, replace=False)
            lines += [f"{user},{brand},0,6-{day}" for brand in brands] + [f"{user},{brands[-1]},1,6-{day}"]
    (folder / "shop.csv").write_text("\n".join(lines) + "\n")
    spec = quality_protocol.DatasetSpec("shop.csv", "tmall", 10, **spec_options)
    monkeypatch.setattr(quality_protocol, "DATA_ROOT", folder)
    monkeypatch.setitem(quality_protocol.DATASETS, "tiny-shop", spec)
    monkeypatch.setitem(quality.DATASETS, "tiny-shop", spec)


def test_a_fine_tuned_row_pretrains_once_then_fine_tunes_on_the_target_action(tmp_path, monkeypatch):
    """``sasrec-ft``: the base run is the cached ``sasrec`` run of the same pretraining flags; the ``ft_`` flags
    reach the fine-tune only; the fine-tuned model is asked with the target action; the time counts both."""
    import quality
    import yaml

    tiny_shop(tmp_path, monkeypatch, target_action="buy", headline="plain")
    bench = quality.Benchmark("tiny-shop", "target", tmp_path / "work", threads=1, budget=60)
    grid = {"num_epochs": ["2"], "ft_method": ["full"], "ft_num_epochs": ["1"]}
    row = bench.row("sasrec-ft", [0], grid, extra=[])

    runs = tmp_path / "work" / "tiny-shop" / "target"
    base_dir = runs / "sasrec" / "num_epochs2-group_by_lengthfalse-seed0"
    tuned_dir = runs / "sasrec-ft" / "num_epochs2-ft_methodfull-ft_num_epochs1-group_by_lengthfalse-seed0"
    tuned_config = yaml.safe_load((tuned_dir / "bertrec_config.yaml").read_text())
    base_config = yaml.safe_load((base_dir / "bertrec_config.yaml").read_text())
    assert tuned_config["base_model"] == str(base_dir) and tuned_config["method"] == "full"
    assert tuned_config["num_epochs"] == 1 and base_config["num_epochs"] == 2  # each stage got its own flags
    assert quality_protocol.load_saved_run(tuned_dir)[3] == "buy"  # fine-tuned prompts end with the action
    assert quality_protocol.load_saved_run(base_dir)[3] is None  # an item-only next-event model: no action
    base = quality.read_evaluation(base_dir)["training"]
    training = quality.read_evaluation(tuned_dir)["training"]
    tuned_metrics = json.loads((tuned_dir / "metrics.json").read_text())
    assert training["finetune_seconds"] == tuned_metrics["training"]["wall_seconds"] > 0
    assert training["wall_seconds"] == pytest.approx(base["wall_seconds"] + training["finetune_seconds"], abs=0.2)
    assert row["model"] == "sasrec-ft" and row["config"]["ft_method"] == "full"
    assert 0 <= row["plain"]["ndcg@10"][0] <= 1 and len(row["training"]["valid_curve"]) == 1


def test_the_final_fit_refits_the_chosen_row_for_its_best_epoch_on_training_plus_validation(tmp_path, monkeypatch):
    """``--protocol final``: the leave-one-out row's configuration, trained for its best validation epoch on a
    split whose validation targets joined training; the row keeps the validation figure it was chosen by."""
    import quality
    import yaml

    tiny_shop(tmp_path, monkeypatch)
    monkeypatch.setattr(quality, "RESULTS", tmp_path / "results")
    chosen = {"model": "sasrec", "seeds": 1, "config": {"num_epochs": "3", "dropout": "0.2"}, "command": "loo",
              "valid_ndcg@10": [0.3, 0.0], "training": {"valid_curve": [0.1, 0.3, 0.2]}}  # fmt: skip
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "quality_tiny-shop_loo.json").write_text(json.dumps({"rows": [chosen]}))
    bench = quality.Benchmark("tiny-shop", "final", tmp_path / "work", threads=1, budget=60)
    assert bench.split.valid.height == 0 and bench.split.stats["validation_targets_trained"] == 40
    row = bench.row("sasrec", [0], {}, extra=[])

    run = (
        tmp_path
        / "work"
        / "tiny-shop"
        / "final"
        / "sasrec"
        / "num_epochs2-dropout0.2-early_stopping_patience0-group_by_lengthfalse-seed0"
    )
    config = yaml.safe_load((run / "bertrec_config.yaml").read_text())
    assert config["train_on_validation"] and config["num_epochs"] == 2 and config["dropout"] == 0.2
    assert row["valid_ndcg@10"] == [0.3, 0.0] and row["training"]["epochs_run"] == (2.0, 0.0)
    evaluation = quality.read_evaluation(run)
    assert "valid" not in evaluation and 0 <= evaluation["test_excluded"]["ndcg@10"] <= 1
    markov = bench.row("markov", [0], {}, extra=[])
    assert markov["valid_ndcg@10"] is None and markov["plain"]["ndcg@10"][0] > 0
    with pytest.raises(SystemExit, match="final-fit protocol"):
        bench.row("recbole-sasrec", [0], {}, extra=[])


def test_run_folders_name_a_flag_turned_off_where_its_default_is_on_and_a_changed_default_by_its_new_value():
    import quality

    # off by default and always was: "false" is implied, so adding it to a grid reuses the runs made before
    assert quality.config_id({"dropout": "0.5", "k_core": "false"}) == "dropout0.5-group_by_lengthfalse"
    # on by default: "false" must stay in the name, or the run would be taken for the default's
    assert (
        quality.config_id({"dropout": "0.5", "repeat_gate": "false"})
        == "dropout0.5-repeat_gatefalse-group_by_lengthfalse"
    )
    # a default that changed: the new one (mixed batches) is named, in any configuration, and the old one
    # (grouped batches) keeps the unnamed folders of the runs made under it
    assert quality.config_id({"group_by_length": "false"}) == "group_by_lengthfalse"
    assert quality.config_id({"dropout": "0.5"}) == "dropout0.5-group_by_lengthfalse"
    assert quality.config_id({}) == "group_by_lengthfalse"
    assert quality.config_id({"dropout": "0.5", "group_by_length": "true"}) == "dropout0.5"
    assert quality.config_id({"group_by_length": "true"}) == "default"


def test_the_cold_protocol_split_holds_no_cold_event_and_keeps_everything_else():
    """Cold items leave every training sequence, history and validation target; a user whose target is cold
    leaves that part (counted); every other event and target is the leave-one-out split's own."""
    import cold_items

    rows = [("u1", item, "v", float(t)) for t, item in enumerate(["a", "c", "b", "a", "d"])]
    rows += [("u2", item, "v", float(t)) for t, item in enumerate(["b", "d", "c", "e"])]
    rows += [("u3", item, "v", float(t)) for t, item in enumerate(["a", "b", "c"])]
    split = leave_one_out(build_sequences(make_events(rows)))
    warm = cold_items.without_cold_items(split, {"c"})
    assert dict(zip(*warm.train.select("user_id", "item_id").sort("user_id").to_dict(as_series=False).values())) == {
        "u1": ["a", "b"],
        "u2": ["b", "d"],
        "u3": ["a"],
    }
    # u2's validation target is cold: dropped; u1 keeps its target with the cold item out of its history
    assert warm.valid.select("user_id", "item_id", "target_item_id").sort("user_id").rows() == [
        ("u1", ["a", "b"], "a"),
        ("u3", ["a"], "b"),
    ]
    assert warm.test.select("user_id", "item_id").sort("user_id").rows() == [
        ("u1", ["a", "b", "a"]),
        ("u2", ["b", "d"]),
    ]
    assert warm.stats["validation_users_dropped"] == 1 and warm.stats["test_users_dropped"] == 1
    assert warm.stats["evaluated_users"] == 2 and warm.train.columns == split.train.columns


def test_the_pooling_diagnostic_starts_from_the_library_rule_and_its_offset_is_the_slope_one_rule():
    """cold_pool.py's "pooled" row must be what Recommender ranks by by default, and its "offset" row (raw
    scores, the new items' raised by one offset giving them their catalogue share on average) the library's
    weighing of slope 1."""
    import cold_pool
    import torch

    from bertrec import item_content
    from bertrec.added_item_weighing import intercept_for_share

    scores = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(cold_pool.pooled(scores, 5), item_content.pooled_scores(scores, 5))
    offset = intercept_for_share(item_content.new_pool_gap(scores, 5), 1.0, 0.1)
    raised = torch.cat([scores[:, :-5], scores[:, -5:] + offset], dim=1)
    assert torch.softmax(raised, dim=1)[:, -5:].sum(dim=1).mean().item() == pytest.approx(0.1, abs=1e-4)
    weighed = item_content.pooled_scores(scores, 5, (1.0, offset))
    assert torch.allclose(weighed, torch.log_softmax(raised, dim=1), atol=1e-5)
