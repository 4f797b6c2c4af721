"""Cold-start items: a share of the catalogue held out of training entirely, then ranked from content alone.

python benchmarks/cold_items.py --dataset amazon-office --models popular markov content-knn sasrec-content \\
    --seeds 0 1 2
python benchmarks/cold_items.py --report        # every result file -> benchmarks/results/cold.md

Protocol (on top of ``quality.py``'s leave-one-out split, so rows compare with its table):

- ``--cold_share`` (10%) of the training catalogue, drawn with a fixed seed, are the cold items: every event on
  them is removed from training and validation histories, and validation users whose target is cold are left
  out of validation (counted in the split's stats). Everything else is the leave-one-out split unchanged, so
  each bertrec row trains exactly as its leave-one-out row does (the configuration chosen there, the same early
  stopping on validation NDCG@10), on the same events less those on cold items. The model it is compared with,
  the leave-one-out run, differs from it in the cold items alone.
- Testing is the leave-one-out test, untouched: histories may hold cold items (bought after the model was
  trained), targets are cold or warm, every catalogue item is ranked, seen items excluded. Before it, the
  trained model gets every catalogue item it lacks through ``Recommender.add_items``'s path
  (``item_content.add_items_from_content``): a row composed from the item's content, no training, ranked
  against the trained rows as the pool of added items (``item_content.pooled_scores``).
- ``--weighing validated``: the added items are weighed against the trained ones by the rule
  ``Recommender.calibrate_added_items`` chooses on the validation users (those with a cold target included,
  which training never validated on), instead of by their share of the catalogue
  (``bertrec.added_item_weighing``). The trained runs are the same; only the ranking differs.
- Rows report NDCG@10 over all test users and over those whose target is cold and warm. Baselines are fit on the
  same warm training data: popularity, Markov (neither can rank a cold item) and content-knn (nearest neighbours
  of the history by TF-IDF + SVD text vector; it needs no interaction with an item). Each bertrec row also gets
  the same figures from its leave-one-out run (``quality.py``'s per-user file), the model trained on all items,
  so warm targets show what holding out the cold items cost.

Until 2026-12-05 the protocol trained on validation targets too, for the leave-one-out row's best epoch count
(a final fit); that made the warm comparison differ in more than the cold items, and the transferred epoch count
was fragile (BENCHMARKS.md keeps those figures).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import (  # noqa: E402
    BERTREC_MODELS,
    RESULTS,
    Benchmark,
    per_user_file,
    shared_arguments,
)
from quality_protocol import (  # noqa: E402
    DATA_ROOT,
    DATASETS,
    evaluate_both,
    load_saved_run,
    mean_std,
    paired_test,
    read_evaluation,
    write_evaluation,
)

from bertrec.args import DataArguments  # noqa: E402
from bertrec.atomic import atomic_write_text  # noqa: E402
from bertrec.data.sequences import SEQUENCE_LIST_COLUMNS  # noqa: E402
from bertrec.data.splits import Split  # noqa: E402
from bertrec.recipes.common import REPORT_FILE  # noqa: E402
from bertrec.recipes.prepare import save_split  # noqa: E402

BASELINES = ("popular", "markov", "content-knn")
COLD_SEED = 0  # the cold items are one fixed draw: every row and seed is tested on the same ones
GROUPS = ("all", "cold", "warm")
WEIGHED_EVALUATION = "evaluation_weighing_validated.json"
WEIGHING_NAMES = {"share": [], "validated": ["weighing=validated"]}


def draw_cold_items(catalogue: list[str], share: float, seed: int = COLD_SEED) -> list[str]:
    """``share`` of the catalogue, uniformly at random (a fixed draw), sorted."""
    count = max(1, round(share * len(catalogue)))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sorted(catalogue), size=count, replace=False).tolist())


def without_items(sequences: pl.DataFrame, items: set[str]) -> pl.DataFrame:
    """Sequences with every event on ``items`` removed (all list columns alike); emptied users dropped."""
    lists = [c for c in SEQUENCE_LIST_COLUMNS if c in sequences.columns]
    events = sequences.select("user_id", *lists).with_row_index("__row").explode(lists)
    kept = events.filter(~pl.col("item_id").is_in(list(items)))
    return kept.group_by("__row", maintain_order=True).agg(pl.col("user_id").first(), *lists).drop("__row")


def without_cold_items(split: Split, cold: set[str]) -> Split:
    """The split the cold protocol trains and validates on: no event on a cold item in any history, training
    sequence or validation target (validation and test users whose target is cold are dropped; the test part is
    the recipe's own figure only, the protocol tests on the untouched split). Users left without history are
    dropped too; ``stats`` counts both."""
    lists = [c for c in SEQUENCE_LIST_COLUMNS if c in split.train.columns]

    def examples(frame: pl.DataFrame) -> pl.DataFrame:
        warm_target = frame.filter(~pl.col("target_item_id").is_in(list(cold)))
        targets = warm_target.drop(lists)
        return without_items(warm_target, cold).join(targets, on="user_id", how="inner", maintain_order="left")

    valid, test = examples(split.valid), examples(split.test)
    stats = {
        **split.stats,
        "evaluated_users": valid.height,
        "cold_items": len(cold),
        "validation_users_dropped": split.valid.height - valid.height,
        "test_users_dropped": split.test.height - test.height,
    }
    return Split(without_items(split.train, cold).select(split.train.columns), valid, test, stats=stats)


class ColdBenchmark(Benchmark):
    """``quality.py``'s leave-one-out benchmark of one dataset, trained without its cold items."""

    def __init__(self, dataset: str, work: Path, threads: int, share: float, text_encoder: str | None = None):
        if DATASETS[dataset].item_features is None:
            raise SystemExit(f"{dataset} has no item feature file: cold items cannot be ranked from content")
        super().__init__(dataset, "loo", work, threads, budget=0)
        catalogue = self.split.train["item_id"].explode().unique().to_list()
        self.share, self.text_encoder = share, text_encoder
        self.cold = set(draw_cold_items(catalogue, share))
        self.root = work / dataset / f"cold{round(share * 100)}"
        self.root.mkdir(parents=True, exist_ok=True)
        warm = without_cold_items(self.split, self.cold)
        prepared = self.root / "warm_split"
        if not (prepared / "split_stats.json").is_file():
            save_split(warm, prepared)
            shutil.copyfile(self.split_dir.parent / REPORT_FILE, prepared / REPORT_FILE)
        self.data_args = DataArguments(prepared_dir=str(prepared))
        self.protocol = f"cold{round(share * 100)}"
        self.warm_train = warm.train  # what the baselines count, as the bertrec rows train on it
        self.test_only = Split(self.split.train, self.split.valid.clear(), self.split.test)
        self.cold_users = self.users_with_cold_target(self.split.test)

    def users_with_cold_target(self, examples: pl.DataFrame) -> set[str]:
        return set(examples.filter(pl.col("target_item_id").is_in(list(self.cold)))["user_id"].to_list())

    def features(self):
        from bertrec.data.item_features import read_item_features

        return read_item_features(DATA_ROOT / self.spec.item_features)

    def _evaluate_saved(self, run_dir: Path) -> dict:
        """The trained model, given every catalogue item it lacks from content alone, on the test split."""
        from bertrec.evaluation import model_scorer

        model, tokenizer, objective, action = self.load_run(run_dir)
        tokenizer, added = self.add_missing_items(model, tokenizer)
        evaluation = evaluate_both(model_scorer(model, tokenizer), tokenizer, self.test_only, objective, action=action)
        return {**evaluation, **added}

    def load_run(self, run_dir: Path) -> tuple:
        import torch

        torch.set_num_threads(self.threads)
        return load_saved_run(run_dir)

    def add_missing_items(self, model, tokenizer) -> tuple:
        """Every catalogue item the saved model lacks, added from content (``Recommender.add_items``' path):
        the extended tokenizer and the counts of what was added."""
        from bertrec import item_content

        catalogue = self.split.train["item_id"].explode().unique().sort()
        missing = catalogue.filter(~catalogue.is_in(tokenizer.spec.items))
        tokenizer, added = item_content.add_items_from_content(model, tokenizer, self.features().for_items(missing))
        counts = {"items_added_from_content": len(added), "cold_items_added": len(set(missing.to_list()) & self.cold)}
        return tokenizer, counts

    def weighed_run(self, model: str, config: dict[str, str], seed: int, max_known_loss: float | None = None) -> dict:
        """``bertrec_run``'s trained model, its added items weighed by the rule ``Recommender.calibrate_added_items``
        chooses on the validation users, those with a cold target included (training never validated on them:
        ``without_cold_items``), within ``max_known_loss`` when given. Cached beside the run's own evaluation."""
        from bertrec.added_item_weighing import fit_weighing, with_weighing
        from bertrec.evaluation import model_scorer

        trained = self.bertrec_run(model, config, seed, [])
        run_dir = self.run_dir(model, config, seed)
        budget = "" if max_known_loss is None else f"_max_known_loss{max_known_loss:g}"
        path = run_dir / WEIGHED_EVALUATION.replace(".json", f"{budget}.json")
        cached = json.loads(path.read_text()) if path.is_file() else {}
        if cached.get("version") == trained.get("version"):
            return cached
        model_, tokenizer, objective, action = self.load_run(run_dir)
        tokenizer, added = self.add_missing_items(model_, tokenizer)
        choice = fit_weighing(
            model_, tokenizer, self.split.valid, objective=objective, action=action, max_known_loss=max_known_loss
        )
        tokenizer = with_weighing(tokenizer, choice.weighing)
        evaluation = evaluate_both(model_scorer(model_, tokenizer), tokenizer, self.test_only, objective, action=action)
        evaluation.update(added, training=trained.get("training", {}))
        evaluation["weighing"] = {
            "slope_intercept": list(choice.weighing),
            "valid_ndcg@10": choice.ndcg_at_10,
            "valid_added_targets": choice.added_targets,
            "candidates": choice.candidates,
        }
        atomic_write_text(path, json.dumps(evaluation) + "\n")
        return evaluation

    def baseline_run(self, model: str) -> dict:
        from bertrec.baselines import content_similarity_scorer, markov_scorer, popularity_scorer
        from bertrec.tokenization import EventTokenizer

        run_dir = self.root / model / ("default-seed0" if self.text_encoder is None else "encoder-seed0")
        evaluation = read_evaluation(run_dir)
        if evaluation is None:
            started = time.perf_counter()
            # the whole catalogue is ranked; the counts behind each score come from warm training data only
            tokenizer = EventTokenizer.build(self.split.train, layout="item", max_events=self.spec.max_events)
            if model == "popular":
                score = popularity_scorer(tokenizer, self.warm_train)
            elif model == "markov":
                score = markov_scorer(tokenizer, self.warm_train)
            else:
                vectors = self.item_text_vectors(tokenizer, self.text_encoder)
                score = content_similarity_scorer(tokenizer, self.warm_train, vectors)
            evaluation = evaluate_both(score, tokenizer, self.test_only, "next")
            evaluation["training"] = {"wall_seconds": round(time.perf_counter() - started, 1)}
            run_dir.mkdir(parents=True, exist_ok=True)
            write_evaluation(run_dir, evaluation)
        return evaluation

    def loo_choice(self, model: str) -> dict:
        """The configuration of ``quality.py``'s leave-one-out row of ``model``."""
        loo = RESULTS / f"quality_{self.dataset}_loo.json"
        rows = json.loads(loo.read_text())["rows"] if loo.is_file() else []
        chosen = next((r for r in rows if r["model"] == model), None)
        if chosen is None:
            raise SystemExit(f"no leave-one-out row for {model} in {loo}: run quality.py on {self.dataset} first")
        return chosen["config"]

    def group_figures(self, details: list[dict]) -> dict:
        """NDCG@10 and HR@10 (mean ± std over runs) of all, cold-target and warm-target test users."""
        figures = {}
        for group in GROUPS:
            ndcg, hits = [], []
            for detail in details:
                values = np.array([v for u, v in zip(detail["user_id"], detail["ndcg@10"]) if self._in_group(u, group)])
                ndcg.append(float(values.mean()))
                hits.append(float((values > 0).mean()))
            figures[group] = {"ndcg@10": mean_std(ndcg), "hr@10": mean_std(hits)}
        return figures

    def _in_group(self, user: str, group: str) -> bool:
        return group == "all" or (user in self.cold_users) == (group == "cold")

    def row(
        self,
        model: str,
        seeds: list[int],
        overrides: dict[str, str],
        weighing: str = "share",
        max_known_loss: float | None = None,
    ) -> tuple[dict, dict]:
        """``overrides``: flags set on top of the leave-one-out choice (e.g. ``dropout``), so a
        cold-start mechanism is measured on the configuration chosen without it. ``weighing``: ``share``
        ranks added items by their catalogue share, ``validated`` by the rule chosen on validation (within
        ``max_known_loss`` of the known targets' NDCG@10 when given)."""
        if model in BASELINES:
            runs, config = [self.baseline_run(model)], {}
            encoded = model == "content-knn" and self.text_encoder  # named by its encoder; others take no flags
            overrides = {"text_encoder": Path(self.text_encoder).name} if encoded else {}
        elif model in BERTREC_MODELS:
            config = {**self.loo_choice(model), **overrides}
            if weighing == "validated":
                runs = [self.weighed_run(model, config, seed, max_known_loss) for seed in seeds]
            else:
                runs = [self.bertrec_run(model, config, seed, []) for seed in seeds]
        else:
            raise SystemExit(f"{model}: the cold protocol runs {list(BASELINES)} and bertrec's rows")
        details = [r["details_excluded"] for r in runs]
        weighing_name = WEIGHING_NAMES[weighing] if model in BERTREC_MODELS else []
        if weighing_name and max_known_loss is not None:
            weighing_name = [*weighing_name, f"max_known_loss={max_known_loss:g}"]
        row = {
            "model": model,
            "name": " ".join([model, *(f"{k}={v}" for k, v in overrides.items()), *weighing_name]),
            "seeds": len(runs),
            "config": config,
            "groups": self.group_figures(details),
            "training": {
                key: mean_std([r["training"][key] for r in runs])
                for key in ("wall_seconds", "peak_rss_mb")
                if all(key in r.get("training", {}) for r in runs)
            },
            "items_added_from_content": runs[0].get("items_added_from_content"),
        }
        if weighing == "validated":
            row["weighing"] = [run["weighing"]["slope_intercept"] for run in runs]
        per_user = {}
        for detail in details:
            for user, value in zip(detail["user_id"], detail["ndcg@10"]):
                per_user[user] = per_user.get(user, 0.0) + value / len(details)
        if model in BERTREC_MODELS:
            trained_on_all = self.loo_per_user(model)
            if trained_on_all is not None:
                row["trained_on_all_items"] = {
                    group: float(np.mean([v for u, v in trained_on_all.items() if self._in_group(u, group)]))
                    for group in GROUPS
                }
                warm = {u: v for u, v in trained_on_all.items() if u not in self.cold_users}
                row["warm_vs_all_items"] = paired_test({u: per_user[u] for u in warm}, warm)
        return row, per_user

    def loo_per_user(self, model: str) -> dict[str, float] | None:
        path = per_user_file(self.dataset, "loo", model)
        if not path.is_file():
            return None
        with gzip.open(path, "rt") as handle:
            return json.load(handle)["excluded"]


def cold_file(dataset: str, protocol: str) -> Path:
    return RESULTS / f"cold_{dataset}_{protocol}.json"


def save(bench: ColdBenchmark, row: dict, per_user: dict[str, float], command: str) -> None:
    out = cold_file(bench.dataset, bench.protocol)
    saved = json.loads(out.read_text()) if out.is_file() else {"rows": [], "per_user": {}}
    row["command"], row["date"] = command, time.strftime("%Y-%m-%d")
    rows = [r for r in saved["rows"] if r["name"] != row["name"]] + [row]
    order = {m: i for i, m in enumerate([*BASELINES, *BERTREC_MODELS])}
    per_users = {**saved["per_user"], row["name"]: {u: round(v, 6) for u, v in per_user.items()}}
    result = {
        "dataset": bench.dataset,
        "protocol": bench.protocol,
        "cold_share": bench.share,
        "cold_items": len(bench.cold),
        "catalogue_items": bench.catalogue,
        "test_users": {"all": bench.split.test.height, "cold": len(bench.cold_users)},
        "date": time.strftime("%Y-%m-%d"),
        "rows": sorted(rows, key=lambda r: (order[r["model"]], r["name"])),
        "per_user": per_users,
    }
    result["comparisons"] = comparisons(result, bench.cold_users)
    atomic_write_text(out, json.dumps(result) + "\n")


def comparisons(result: dict, cold_users: set[str]) -> list[dict]:
    """Each bertrec row against each baseline on the cold-target users and on the warm-target users."""
    per_user = result["per_user"]
    found = []
    for ours in (r["name"] for r in result["rows"] if r["model"] in BERTREC_MODELS):
        for other in (r["name"] for r in result["rows"] if r["model"] in BASELINES):
            for group in ("cold", "warm"):
                users = [u for u in per_user[ours] if (u in cold_users) == (group == "cold")]
                a = {u: per_user[ours][u] for u in users}
                b = {u: per_user[other][u] for u in users if u in per_user[other]}
                mine, theirs = np.mean(list(a.values())), np.mean(list(b.values()))
                ratio = float(mine / theirs) if theirs > 0 else None  # a baseline that cannot rank them
                found.append({"ours": ours, "other": other, "group": group, "ratio": ratio, **paired_test(a, b)})
    return found


def markdown(result: dict) -> str:
    users = result["test_users"]
    lines = [
        f"### {result['dataset']} — cold items: {result['cold_share']:.0%} of the catalogue "
        f"({result['cold_items']} of {result['catalogue_items']} items) held out of training",
        "",
        f"Test users: {users['all']} ({users['cold']} with a cold target); NDCG@10 and HR@10, seen items excluded, "
        f'full ranking over every catalogue item. "trained on all": the same model\'s leave-one-out run.',
        "",
        "| model | NDCG@10 all | NDCG@10 cold | NDCG@10 warm | HR@10 cold | HR@10 warm "
        "| trained on all: cold / warm | seeds | train s | date |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        groups, reference = row["groups"], row.get("trained_on_all_items")
        on_all = f"{reference['cold']:.4f} / {reference['warm']:.4f}" if reference else ""
        wall = row["training"].get("wall_seconds")
        wall = "" if wall is None else f"{wall[0]:.0f}"
        lines.append(
            f"| {row['name']} | {_cell(groups['all']['ndcg@10'])} | {_cell(groups['cold']['ndcg@10'])} "
            f"| {_cell(groups['warm']['ndcg@10'])} | {_cell(groups['cold']['hr@10'])} "
            f"| {_cell(groups['warm']['hr@10'])} | {on_all} | {row['seeds']} | {wall} "
            f"| {row['date']} |"
        )
    lines += ["", "Commands:", "", *sorted({f"- `{r['command']}`" for r in result["rows"]})]
    if result["comparisons"]:
        lines += ["", "| bertrec | vs | targets | NDCG@10 ratio | mean difference | paired p |"]
        lines.append("|---|---|---|---|---|---|")
        for c in result["comparisons"]:
            ratio = "—" if c["ratio"] is None else f"{c['ratio']:.3f}"
            lines.append(
                f"| {c['ours']} | {c['other']} | {c['group']} | {ratio} | {c['mean_difference']:+.4f} "
                f"| {c['p_value']:.4f} |"
            )
    warm_losses = [(r["name"], r["warm_vs_all_items"]) for r in result["rows"] if "warm_vs_all_items" in r]
    for model, test in warm_losses:
        lines.append(
            f"\n{model}, warm targets against the same model trained on all items: mean difference "
            f"{test['mean_difference']:+.4f}, paired p {test['p_value']:.4f} ({test['users']} users)."
        )
    return "\n".join(lines)


def _cell(pair) -> str:
    mean, std = pair
    return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"


def write_report() -> str:
    parts = [markdown(json.loads(path.read_text())) for path in sorted(RESULTS.glob("cold_*.json"))]
    text = "\n\n".join(parts) + "\n"
    atomic_write_text(RESULTS / "cold.md", text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(n for n, s in DATASETS.items() if s.item_features))
    parser.add_argument("--models", nargs="+", default=[*BASELINES, "sasrec-content"])
    parser.add_argument("--cold_share", type=float, default=0.1)
    parser.add_argument("--set", nargs="*", default=[], help="name=value pretrain flags over the leave-one-out choice")
    parser.add_argument(
        "--weighing",
        choices=sorted(WEIGHING_NAMES),
        default="share",
        help="how added items are weighed against trained ones: their catalogue share, or the rule "
        "Recommender.calibrate_added_items chooses on validation (bertrec rows only)",
    )
    parser.add_argument(
        "--max_known_loss",
        type=float,
        help="with --weighing validated: the share of known-target NDCG@10 on validation that added items may cost",
    )
    parser.add_argument("--text_encoder", help="content-knn: a sentence-transformers model folder (benchmark-only)")
    shared_arguments(parser)
    args = parser.parse_args()
    if not args.report:
        if args.dataset is None:
            parser.error("--dataset is required unless --report")
        bench = ColdBenchmark(args.dataset, Path(args.work_dir), args.cpu_threads, args.cold_share, args.text_encoder)
        command = " ".join(["python", "benchmarks/cold_items.py", *sys.argv[1:]])
        overrides = dict(pair.split("=", 1) for pair in args.set)
        for model in args.models:
            save(bench, *bench.row(model, args.seeds, overrides, args.weighing, args.max_known_loss), command)
    print(write_report())


if __name__ == "__main__":
    main()
