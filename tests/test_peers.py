"""RecTools and RePlay peer runners (benchmarks/peers): our export read back, our ranking rules, and (slow, with
the peers' own virtual environments installed) tiny resumable training runs."""

from __future__ import annotations

import importlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertrec.data.sequences import build_sequences
from bertrec.data.splits import leave_one_out
from bertrec.evaluation import evaluate_scorer
from bertrec.metrics import pessimistic_ranks
from bertrec.tokenization import EventTokenizer
from tests.conftest import make_events

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))
sys.path.insert(0, str(PEERS.parent))
import peer_io  # noqa: E402
import quality_protocol  # noqa: E402

RECTOOLS_PYTHON = PEERS / ".venv-rectools" / "bin" / "python"
REPLAY_PYTHON = PEERS / ".venv-replay" / "bin" / "python"


def _split(seed: int = 0, n_users: int = 30, n_items: int = 25):
    """Our leave-one-out split of a random log with repeats, tied timestamps and a few too-short users."""
    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        n = rng.choice([1, 2, 3, 5, 8, 12])
        t = 0.0
        for _ in range(n):
            t += rng.choice([0.0, 1.0])  # ties keep input order
            rows.append((f"u{u}", f"i{rng.randrange(n_items)}", "v", t))
    rows += [("u_new", "only_valid", "v", 0.0), ("u_new", "only_test", "v", 1.0)]
    rows = [("u_new", "i1", "v", -1.0)] + rows
    return leave_one_out(build_sequences(make_events(rows)))


def test_peer_reader_reads_our_export_back_exactly(tmp_path):
    split = _split()
    folder = quality_protocol.export_recbole(split, tmp_path / "files")
    peer = peer_io.load_split(folder)
    train = dict(zip(split.train["user_id"].to_list(), split.train["item_id"].to_list()))
    assert peer.train == train and list(peer.train) == list(train)  # users, items and their order
    assert peer.valid == dict(zip(split.valid["user_id"].to_list(), split.valid["target_item_id"].to_list()))
    assert peer.test == dict(zip(split.test["user_id"].to_list(), split.test["target_item_id"].to_list()))
    for user, history in zip(split.test["user_id"].to_list(), split.test["item_id"].to_list()):
        assert peer.test_history(user) == history  # training events + the validation event
    for user, history in zip(split.valid["user_id"].to_list(), split.valid["item_id"].to_list()):
        assert peer.valid_history(user) == history
    assert set(peer.catalogue) == set(split.train["item_id"].explode().to_list())
    assert "only_valid" not in peer.item_index and peer.valid["u_new"] == "only_valid"
    # our writer for generated logs writes what export_recbole writes
    again = peer_io.load_split(peer_io.write_split(peer, tmp_path / "again"))
    assert (again.train, again.valid, again.test) == (peer.train, peer.valid, peer.test)


def test_runners_import_and_parse_without_their_peer_installed():
    for name, extra in (("rectools_run", ["--model", "BERT4Rec"]), ("replay_run", [])):
        module = importlib.import_module(name)
        args = module.parse_args(
            ["--split_dir", "d", "--max_len", "50", "--run_dir", "r", "--output", "o.json", *extra]
        )
        assert (args.hidden_size, args.num_layers, args.num_heads, args.patience) == (64, 2, 2, 10)
    flags = ["--split_dir", "d", "--model", "SASRec", "--max_len", "5", "--run_dir", "r", "--output", "o"]
    assert importlib.import_module("rectools_run").parse_args([*flags, "--preset", "rectools"]).hidden_size == 256
    assert "rectools" not in sys.modules and "replay" not in sys.modules


def test_peer_ranks_match_pessimistic_ranks():
    torch.manual_seed(0)
    scores = torch.randint(0, 4, (50, 30)).float()  # many ties
    scores[3, :] = -math.inf
    targets = torch.randint(-1, 30, (50,))
    ranks, top = peer_io.rank_targets(scores, targets)
    assert torch.equal(ranks, pessimistic_ranks(scores, targets))
    assert top.shape == (50, 30) and (top[3] == -1).all()


def test_peer_evaluation_equals_ours_in_both_settings():
    """One scorer (a fixed score table by the last history item, with ties) through our evaluate_scorer and
    through peer_io.evaluate_users gives the same per-user test ranks, seen items excluded and kept."""
    split = _split(seed=1)
    tokenizer = EventTokenizer.build(split.train, layout="item", max_events=8)
    peer = peer_io.PeerSplit(
        dict(zip(split.train["user_id"].to_list(), split.train["item_id"].to_list())),
        dict(zip(split.valid["user_id"].to_list(), split.valid["target_item_id"].to_list())),
        dict(zip(split.test["user_id"].to_list(), split.test["target_item_id"].to_list())),
    )
    items = peer.catalogue
    rng = random.Random(3)
    table = {a: {b: float(rng.randrange(3)) for b in items} for a in [*items, None]}  # None: unknown last item

    def ours(batch):
        out = torch.empty(len(batch.last_item), tokenizer.num_items)
        for row, last in enumerate(batch.last_item.tolist()):
            key = tokenizer.spec.items[last] if last >= 0 else None
            out[row] = torch.tensor([table[key].get(item, 0.0) for item in tokenizer.spec.items])
        return out

    def theirs(users, histories):
        keys = [h[-1] if h[-1] in peer.item_index else None for h in histories]
        return torch.tensor([[table[k][item] for item in items] for k in keys])

    result = peer_io.evaluate_users(peer, theirs, list(peer.test), "test", batch_size=7)
    for setting in peer_io.SETTINGS:
        metrics = evaluate_scorer(
            ours, tokenizer, split.test, ks=(10, 50), exclude_seen=setting == "excluded", details=True
        )
        expected = {
            u: (None if math.isinf(r) else int(r))
            for u, r in zip(metrics["details"]["user_id"], metrics["details"]["rank"])
        }
        assert result["rank"][setting] == expected
        for name in peer_io.METRIC_NAMES:
            assert result["metrics"][setting][name] == pytest.approx(metrics[name])
        for user, top in result["top10"][setting].items():
            assert all(i is None or i in peer.item_index for i in top)
            if setting == "excluded":
                assert not set(top) & set(peer.test_history(user))


def test_quality_turns_a_peer_result_into_our_evaluation_with_misses_and_restarts():
    """benchmarks/quality.py's conversion: a missed target (rank None) counts as outside every cut-off, the
    per-user NDCG@10 feeds the paired tests, and the run's epochs and restarts reach the row."""
    import quality

    ranks = {"u1": 1, "u2": 4, "u3": None, "u4": 60}
    result = {
        "best_valid": {"excluded": {"ndcg@10": 0.3}, "plain": {"ndcg@10": 0.4}},
        "per_user_rank": {"excluded": ranks, "plain": {**ranks, "u3": 2}},
        "top10": {setting: {u: ["a"] for u in ranks} for setting in ("excluded", "plain")},
        "train_seconds": 12.0, "seconds_to_best": 8.0, "epochs_run": 7, "best_epoch": 4,
        "stopped_by": "early_stopping", "flattened": False, "valid_curve": [0.1, 0.3], "restarts": 2,
    }  # fmt: skip
    evaluation = quality.peer_evaluation(result, {"peak_rss_mb": 500})
    excluded = evaluation["test_excluded"]
    assert excluded["hr@10"] == 0.5 and excluded["hr@50"] == 0.5
    assert excluded["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / 4)
    assert evaluation["details_plain"]["ndcg@10"][2] == pytest.approx(1 / math.log2(3))
    assert evaluation["valid"]["ndcg@10"] == 0.3 and evaluation["valid_plain"]["ndcg@10"] == 0.4
    assert evaluation["training"]["restarts"] == 2 and evaluation["training"]["peak_rss_mb"] == 500
    assert evaluation["training"]["accelerator"] == "cpu"  # a runner result from before --accelerator existed


def test_peer_results_made_elsewhere_are_taken_as_they_ended(tmp_path):
    """--peer_results: a GPU batch's runner result becomes the row (a budget stop stays a budget stop) without
    the peer installed here and without a run; the table says where its seconds were spent."""
    import quality

    result = {
        "args": {"accelerator": "gpu"},
        "best_valid": {"excluded": {"ndcg@10": 0.3}, "plain": {"ndcg@10": 0.4}},
        "per_user_rank": {"excluded": {"u1": 3}, "plain": {"u1": 3}},
        "top10": {setting: {"u1": ["a"]} for setting in ("excluded", "plain")},
        "train_seconds": 300.0, "seconds_to_best": 300.0, "epochs_run": 12, "best_epoch": 12,
        "stopped_by": "budget", "flattened": False, "valid_curve": [0.1, 0.3], "restarts": 0,
    }  # fmt: skip
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "amazon-beauty_rectools-sasrec.json").write_text(json.dumps(result))
    bench = object.__new__(quality.Benchmark)
    bench.dataset, bench.protocol, bench.root, bench.peer_results = "amazon-beauty", "loo", tmp_path, tmp_path / "gpu"

    def never(files, run_dir):
        raise AssertionError("an imported peer row must not train")

    evaluation = bench._peer_evaluation(
        "rectools-sasrec", tmp_path / "no-venv" / "python", "install_rectools.sh", "peer.json",
        quality.peer_evaluation, never,
    )  # fmt: skip
    assert evaluation["training"]["stopped_by"] == "budget" and evaluation["training"]["accelerator"] == "gpu"
    assert evaluation["test_excluded"]["ndcg@10"] == pytest.approx(0.5)
    assert (tmp_path / "rectools-sasrec" / "default-seed2020" / "peer.json").is_file()
    row = {"training": {"wall_seconds": [300.0, 0.0], "accelerator": "gpu"}}
    assert quality._on_gpu(row["training"]) == " (GPU)" and quality._on_gpu({}) == ""


def test_table_says_how_each_peer_run_ended():
    """A converged row and a budget-stopped one must read differently in BENCHMARKS.md's tables."""
    import quality

    converged = {"stopped_by": "early_stopping", "best_epoch": 75, "flattened": True, "restarts": 1}
    assert quality.stopped_cell(converged) == "early stop, best 75, 1 restart"
    budget = {"stopped_by": "budget", "best_epoch": 3, "flattened": False, "restarts": 0}
    assert quality.stopped_cell(budget) == "budget, best 3, still rising"
    assert quality.stopped_cell({"stopped_by": "epochs", "flattened": False}) == "full schedule"  # bertrec
    assert quality.stopped_cell({"wall_seconds": (5.0, 0.0)}) == ""  # a baseline: nothing to say


def test_published_peer_settings_replace_the_equal_size_flags(tmp_path, monkeypatch):
    """The published-settings row runs with its authors' flags for that dataset, and refuses a dataset
    they published nothing for rather than silently running the equal-size model."""
    import quality

    commands = []

    def fake_peer_evaluation(self, model, python, install, result_name, convert, command):
        commands.append(command(tmp_path / "files", tmp_path / "run"))
        return {}

    monkeypatch.setattr(quality.Benchmark, "_peer_evaluation", fake_peer_evaluation)
    bench = object.__new__(quality.Benchmark)
    bench.spec, bench.threads, bench.headline = quality.DATASETS["amazon-beauty"], 1, "excluded"
    bench.dataset = "amazon-beauty"
    bench.peer_run("rectools-sasrec-published")
    flags = commands[0]
    assert flags[flags.index("--hidden_size") + 1] == "256" and flags[flags.index("--num_layers") + 1] == "1"
    assert flags[flags.index("--loss") + 1] == "sampled_softmax" and flags.count("--hidden_size") == 1
    bench.peer_run("rectools-sasrec")
    assert commands[1][commands[1].index("--hidden_size") + 1] == "64"
    bench.dataset = "ml-100k"
    with pytest.raises(SystemExit, match="no published settings for ml-100k"):
        bench.peer_run("rectools-sasrec-published")


def test_budget_stopped_peer_rows_are_continued_not_kept(tmp_path, monkeypatch):
    """A row a wall-clock budget stopped is not converged: quality.py runs it again (the runner continues it
    from its last epoch) instead of serving the cached evaluation; converged rows stay cached."""
    import quality

    run_dir = tmp_path / "ml" / "loo" / "recbole-sasrec" / "default-seed2020"
    run_dir.mkdir(parents=True)
    runs = []

    def fake_run_child(command, log):
        runs.append(command)
        (run_dir / "recbole.json").write_text("{}")
        return {"peak_rss_mb": 1}

    monkeypatch.setattr(quality, "run_child", fake_run_child)
    monkeypatch.setattr(quality, "export_recbole", lambda split, folder: folder)
    bench = object.__new__(quality.Benchmark)
    bench.protocol, bench.root, bench.split = "loo", tmp_path / "ml" / "loo", None
    python = tmp_path / "python"
    python.write_text("")

    def convert(result, usage):
        return {"version": quality.EVALUATION_VERSION, "training": {"stopped_by": "early_stopping"}}

    for stopped_by, reruns in (("budget", 1), ("early_stopping", 0)):
        cached = {"version": quality.EVALUATION_VERSION, "training": {"stopped_by": stopped_by}}
        quality.write_evaluation(run_dir, cached)
        before = len(runs)
        bench._peer_evaluation("recbole-sasrec", python, "x.sh", "recbole.json", convert, lambda f, r: ["run"])
        assert len(runs) - before == reruns


# ------------------------------------------------------------------------------------------------------------
# with the peers installed (bash benchmarks/peers/install_rectools.sh / install_replay.sh)
# ------------------------------------------------------------------------------------------------------------


def _run(python: Path, script: str, split_dir: Path, run_dir: Path, *flags: str) -> dict:
    out = run_dir / "result.json"
    command = [str(python), str(PEERS / script), "--split_dir", str(split_dir), "--run_dir", str(run_dir)]
    command += ["--output", str(out), "--threads", "1", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def _check_result(result: dict, split: peer_io.PeerSplit) -> None:
    assert set(result["per_user_rank"]["excluded"]) == set(split.test)
    for setting in peer_io.SETTINGS:
        ranks = [math.inf if r is None else r for r in result["per_user_rank"][setting].values()]
        assert result["test"][setting] == pytest.approx(peer_io.metrics_from_ranks(ranks))
        for user, top in result["top10"][setting].items():
            assert len(top) == 10 and set(top) <= set(split.catalogue)  # our item ids
            if setting == "excluded":
                assert not set(top) & set(split.test_history(user))
    assert result["data"]["n_items_catalogue"] == len(split.catalogue)
    assert result["epochs_run"] == len(result["valid_curve"]) == len(result["epochs"])
    assert result["best_valid"]["epoch"] == result["best_epoch"]


PEER_RUNS = [
    pytest.param(RECTOOLS_PYTHON, "rectools_run.py", ["--model", "SASRec"], id="rectools-sasrec"),
    pytest.param(RECTOOLS_PYTHON, "rectools_run.py", ["--model", "BERT4Rec"], id="rectools-bert4rec"),
    pytest.param(REPLAY_PYTHON, "replay_run.py", ["--loss", "CE"], id="replay-sasrec-ce"),
    pytest.param(
        REPLAY_PYTHON,
        "replay_run.py",
        ["--loss", "SCE", "--sce_buckets", "16", "--sce_bucket_size_x", "16", "--sce_bucket_size_y", "16"],
        id="replay-sasrec-sce",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("python", "script", "flags"), PEER_RUNS)
def test_peer_trains_resumes_and_scores_our_items(tmp_path, python, script, flags):
    if not python.is_file():
        pytest.skip(f"{python.parent.parent.name} is not installed")
    split = peer_io.generated_split(n_users=80, n_items=40)
    split_dir = peer_io.write_split(split, tmp_path / "split")
    run_dir = tmp_path / "run"
    # a zero budget stops after the first epoch: a "budget" row, continued (not retrained) by the rerun
    first = _run(
        python, script, split_dir, run_dir, "--max_len", "10", "--epochs", "5", "--budget_seconds", "0", *flags
    )
    assert (first["epochs_run"], first["restarts"], first["stopped_by"]) == (1, 0, "budget")
    _check_result(first, split)
    second = _run(python, script, split_dir, run_dir, "--max_len", "10", "--epochs", "2", *flags)
    assert (second["epochs_run"], second["restarts"], second["stopped_by"]) == (2, 1, "max_epochs")
    assert second["valid_curve"][0] == first["valid_curve"][0]  # epoch 1 kept, not retrained
    assert [e["restart"] for e in second["epochs"]] == [0, 1]
    _check_result(second, split)


@pytest.mark.slow
def test_rectools_sasrec_learns_more_than_popularity(tmp_path):
    if not RECTOOLS_PYTHON.is_file():
        pytest.skip(".venv-rectools is not installed")
    split = peer_io.generated_split(n_users=300, n_items=80, seed=1)
    split_dir = peer_io.write_split(split, tmp_path / "split")
    result = _run(
        RECTOOLS_PYTHON, "rectools_run.py", split_dir, tmp_path / "run",
        "--model", "SASRec", "--max_len", "20", "--epochs", "30", "--patience", "5",
    )  # fmt: skip
    counts = {item: 0 for item in split.catalogue}
    for items in split.train.values():
        for item in items:
            counts[item] += 1
    popular = torch.tensor([counts[i] for i in split.catalogue], dtype=torch.float)

    def popularity(users, histories):
        return popular.expand(len(users), -1)

    baseline = peer_io.evaluate_users(split, popularity, list(split.test), "test")["metrics"]["excluded"]["ndcg@10"]
    print(f"rectools SASRec excluded ndcg@10 {result['test']['excluded']['ndcg@10']:.4f}, popularity {baseline:.4f}")
    assert result["test"]["excluded"]["ndcg@10"] > baseline + 0.1


RECBOLE_PYTHON = PEERS / ".venv-recbole" / "bin" / "python"


@pytest.mark.slow
def test_recbole_continues_a_budget_stopped_run_from_its_last_epoch(tmp_path):
    """A RecBole run stopped by its wall-clock budget leaves its state; the same command continues it (weights,
    optimiser, early-stopping counters and epoch record), so a peer converges across benchmark invocations."""
    if not RECBOLE_PYTHON.is_file():
        pytest.skip(".venv-recbole is not installed")
    split = peer_io.generated_split(n_users=80, n_items=80)  # RecBole's own metrics take a top-50
    split_dir = peer_io.write_split(split, tmp_path / "split")
    out = tmp_path / "run" / "recbole.json"
    command = [str(RECBOLE_PYTHON), str(PEERS / "recbole_run.py"), "--split_dir", str(split_dir), "--model", "SASRec",
               "--max_len", "10", "--epochs", "3", "--threads", "1", "--output", str(out), "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*flags: str) -> dict:
        done = subprocess.run([*command, *flags], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads(out.read_text())

    first = run("--budget_seconds", "0")  # stops after its first epoch
    assert (first["epochs_run"], first["stopped_by"], first["restarts"]) == (1, "budget", 0)
    second = run()
    assert (second["epochs_run"], second["restarts"]) == (3, 1) and second["stopped_by"] == "max_epochs"
    assert second["valid_curve"][0] == first["valid_curve"][0]  # epoch 1 kept, not retrained
    assert set(second["per_user_rank"]["excluded"]) == set(split.test)
    assert not (out.parent / "recbole_recbole_work").exists()  # finished: its state is cleaned up
