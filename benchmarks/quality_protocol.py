"""The one protocol every model of ``quality.py`` is measured under: data, split, evaluation, statistics.

- Data: a public log read by ``bertrec.data.public_formats``, written once as canonical events (Parquet), then
  cleaned and split by the library's own ``prepare_data``. bertrec runs read the same Parquet with the same
  cleaning flags, so every model (and RecBole, through exported atomic files) sees the identical split.
- Ties in timestamps keep input order (the canonical ``event_index``), for us and for RecBole, which gets each
  event's ordinal position as its timestamp.
- Evaluation: full ranking over every training item, in two settings: seen items kept (``plain``) and the
  user's history items excluded (``excluded``). Per-user ranks and top-10 lists are kept for paired tests,
  catalogue coverage and the popularity of what is recommended.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from bertrec.args import DataArguments
from bertrec.atomic import atomic_write_text
from bertrec.data.splits import Split
from bertrec.evaluation import evaluate_scorer
from bertrec.metrics import per_row_ndcg
from bertrec.recipes.common import evaluated_parts, prepare_data
from bertrec.recipes.prepare import load_split, save_split
from bertrec.tokenization import EventTokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("BERTREC_DATA", ROOT.parent / "shared" / "data"))
KS = (10, 50)
SETTINGS = ("excluded", "plain")  # seen items excluded (the headline), and kept


@dataclass(frozen=True)
class DatasetSpec:
    """Where a benchmark dataset lives, how it is read and cleaned, and its protocol constants."""

    path: str  # relative to DATA_ROOT
    reader: str
    max_events: int
    reader_options: dict = field(default_factory=dict)
    cleaning: dict = field(default_factory=dict)  # DataArguments fields
    rich_layout: str = "time action item"  # bertrec's own rows; "item" where the log has no time or actions
    target_action: str | None = None  # the "next purchase" row set
    # the setting configurations are selected and compared in: "excluded" (seen items removed from rankings),
    # or "plain" where repeat consumption is the point (Tmall: most buys repeat a brand the user has seen)
    headline: str = "excluded"
    item_features: str | None = None  # item content beside the log (relative to DATA_ROOT), for content rows

    @property
    def valid_key(self) -> str:
        """Where ``evaluate_both`` keeps validation metrics of the headline setting."""
        return "valid" if self.headline == "excluded" else "valid_plain"


DATASETS = {
    # the built-in shop log (SyntheticShopConfig defaults): what the README's main command trains on; the
    # recipe's default cleaning and length, and seen items kept as the recipe evaluates by default
    "synthetic": DatasetSpec("", "synthetic", 50, target_action="purchase", headline="plain"),
    # MovieLens 100K as RecBole ships it; every rating kept; ratings become actions rate_1..rate_5; genres and
    # release years (ml-100k.item) become attribute tokens for the content rows
    "ml-100k": DatasetSpec(
        "ml-100k/ml-100k.inter",
        "recbole",
        200,
        reader_options={"rating_actions": "rate"},
        item_features="ml-100k/ml-100k.item",
    ),
    # the BERT4Rec paper's file: already 5-core, chronological, no timestamps or actions; repeats kept as they are
    "amazon-beauty": DatasetSpec(
        "amazon-beauty/beauty.txt", "sequence_text", 50, cleaning={"drop_duplicates": False}, rich_layout="item"
    ),
    # 4 actions, dates only (same-day order = file order); repeated same-day clicks are exact duplicates: dropped
    "tmall-2014-brand": DatasetSpec(
        "tmall-2014-brand/t_alibaba_data.csv",
        "tmall",
        200,
        target_action="buy",
        cleaning={"min_user_events": 3},
        headline="plain",
    ),
    # Amazon 2014 Office / 2018 Industrial & Scientific, 5-core item sequences with item text (the layout of
    # the semantic-ID papers): no times or actions; brand and category path become attribute tokens
    "amazon-office": DatasetSpec(
        "amazon-office/Office.inter.json",
        "inter_json",
        50,
        cleaning={"drop_duplicates": False},
        rich_layout="item",
        item_features="amazon-office/Office.item.json",
    ),
    "amazon-scientific": DatasetSpec(
        "amazon-scientific/Scientific.inter.json",
        "inter_json",
        50,
        cleaning={"drop_duplicates": False},
        rich_layout="item",
        item_features="amazon-scientific/Scientific.item.json",
    ),
    # sessions as users; 2-click sessions cannot be validated and tested but still train
    "yoochoose-100k": DatasetSpec(
        "yoochoose-100k/yoochoose-clicks-100k.txt", "yoochoose", 50, cleaning={"min_user_events": 2}
    ),
}


def data_arguments(spec: DatasetSpec, events_file: Path, protocol: str) -> DataArguments:
    """The DataArguments every run of a (dataset, protocol) uses; ``protocol`` is loo, temporal or target."""
    options = dict(spec.cleaning)
    if protocol == "temporal":
        options["split"] = "temporal"
    if protocol == "target":
        options["target_action"] = spec.target_action
    if protocol == "final":
        options["train_on_validation"] = True
    return DataArguments(dataset=str(events_file), **options)


def data_flags(arguments: DataArguments) -> list[str]:
    """The same DataArguments as recipe flags (only fields that differ from the defaults)."""
    defaults, flags = DataArguments(), []
    for name, value in vars(arguments).items():
        if value != getattr(defaults, name):
            flags += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def canonical_events(name: str, work: Path) -> Path:
    """The dataset as canonical events in Parquet (cached), read from DATA_ROOT by its public-format reader."""
    from bertrec.data.public_formats import read_public

    out = work / name / "events.parquet"
    if out.is_file():
        return out
    spec = DATASETS[name]
    if spec.reader == "synthetic":  # the built-in shop log, exactly as the recipes' default dataset
        from bertrec.data.synthetic import generate_shop_log

        events = generate_shop_log().drop("category")
    else:
        source = DATA_ROOT / spec.path
        if not source.is_file():
            raise SystemExit(f"{source} not found: set BERTREC_DATA to the folder holding {spec.path}")
        events = read_public(source, reader=spec.reader, **spec.reader_options).sort("event_index")
    if "timestamp" in events.columns and events["timestamp"].null_count() == events.height:
        events = events.drop("timestamp")  # no times at all: order is file order
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_suffix(".tmp")
    events.drop("event_index").write_parquet(temp)
    temp.replace(out)
    return out


def prepared_split(name: str, work: Path, protocol: str) -> tuple[Split, DataArguments, Path]:
    """The split of (dataset, protocol), made once by the library and cached as Parquet."""
    events_file = canonical_events(name, work)
    arguments = data_arguments(DATASETS[name], events_file, protocol)
    folder = work / name / protocol / "split"
    if not (folder / "split_stats.json").is_file():
        data = prepare_data(arguments)
        save_split(data.split, folder)
        data.report.save(folder.parent / "cleaning_report.json")
    return load_split(folder), arguments, folder


def export_recbole(split: Split, folder: Path) -> Path:
    """train/valid/test atomic files for the RecBole runner; timestamps are ordinal positions per user."""
    if (folder / "test.inter").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    train = split.train.select("user_id", "item_id").explode("item_id")
    train = train.with_columns(position=pl.int_range(pl.len()).over("user_id"))
    lengths = split.valid.select("user_id", n=pl.col("item_id").list.len())
    valid = split.valid.select("user_id", item_id="target_item_id").join(lengths, on="user_id")
    test = split.test.select("user_id", item_id="target_item_id").join(lengths, on="user_id")
    header = "user_id:token\titem_id:token\ttimestamp:float\n"
    for part, frame in (
        ("train", train.select("user_id", "item_id", timestamp="position")),
        ("valid", valid.select("user_id", "item_id", timestamp="n")),
        ("test", test.select("user_id", "item_id", timestamp=pl.col("n") + 1)),
    ):
        body = frame.with_columns(pl.col("timestamp").cast(pl.Float64)).write_csv(separator="\t", include_header=False)
        atomic_write_text(folder / f"{part}.inter", header + body)
    return folder


def load_saved_run(run_dir: Path):
    """A trained run folder as (model, tokenizer, objective, prompt action).

    The prompt carries the run's target action only where the model was trained to read it
    (``reads_action_prompt``).
    """
    import yaml

    from bertrec.modeling import load_model, model_objective
    from bertrec.recipes.common import CONFIG_FILE, reads_action_prompt

    model, tokenizer = load_model(str(run_dir)).eval(), EventTokenizer.load(run_dir)
    objective = model_objective(model)
    config = yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text())
    return model, tokenizer, objective, config.get("target_action") if reads_action_prompt(config, objective) else None


EVALUATION_VERSION = 2  # bump when evaluate_both changes; older evaluation files are recomputed


def evaluate_both(score, tokenizer: EventTokenizer, split: Split, objective: str, **options) -> dict:
    """Validation and test metrics in both seen-item settings, with per-user test details.

    ``valid`` holds the seen-excluded setting, ``valid_plain`` the other (``DatasetSpec.valid_key`` picks one);
    a final-fit split has no validation examples, and its evaluation no validation metrics.
    """
    result: dict = {"version": EVALUATION_VERSION}
    for part, examples in evaluated_parts(split).items():
        for setting in SETTINGS:
            metrics = evaluate_scorer(
                score,
                tokenizer,
                examples,
                objective=objective,
                ks=KS,
                exclude_seen=setting == "excluded",
                details=part == "test",
                desc=f"{part} ({setting})",
                **options,
            )
            if part == "valid":
                result["valid" if setting == "excluded" else "valid_plain"] = metrics
                continue
            details = metrics.pop("details")
            result[f"test_{setting}"] = metrics
            top10 = details["top_items"][:, :10].reshape(-1)
            result[f"details_{setting}"] = {
                "user_id": details["user_id"],
                "ndcg@10": per_row_ndcg(details["rank"], 10).tolist(),
                "top10": [tokenizer.spec.items[i] if i >= 0 else None for i in top10],
            }
    return result


def write_evaluation(run_dir: Path, evaluation: dict) -> None:
    atomic_write_text(run_dir / "evaluation.json", json.dumps(evaluation) + "\n")


def read_evaluation(run_dir: Path) -> dict | None:
    """A run's evaluation file, or None when it is missing or was made by an older ``evaluate_both``."""
    path = run_dir / "evaluation.json"
    if not path.is_file():
        return None
    evaluation = json.loads(path.read_text())
    return evaluation if evaluation.get("version") == EVALUATION_VERSION else None


def popularity_of(top10: list, train: pl.DataFrame) -> float:
    """Mean share of training events of the recommended items (average recommendation popularity), in
    events per thousand; the targets' own figure is reported beside it for scale."""
    counts = train["item_id"].explode().value_counts()
    lookup = dict(zip(counts["item_id"].to_list(), counts["count"].to_list()))
    total = counts["count"].sum()
    listed = [lookup.get(i, 0) for i in top10 if i is not None]
    return 1000.0 * float(np.mean(listed)) / total if listed else 0.0


def coverage_of(top10: list, catalogue_size: int) -> float:
    return len({i for i in top10 if i is not None}) / catalogue_size


def paired_test(ours: dict[str, float], theirs: dict[str, float], permutations: int = 20000, seed: int = 0) -> dict:
    """Two-sided paired sign-flip permutation test on per-user NDCG@10 (users both rows evaluated)."""
    users = sorted(ours.keys() & theirs.keys())
    diff = np.array([ours[u] - theirs[u] for u in users])
    observed = diff.mean()
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(permutations, diff.size))
    null = np.abs(signs @ diff) / diff.size
    p_value = (1 + int((null >= abs(observed) - 1e-15).sum())) / (permutations + 1)
    return {"users": len(users), "mean_difference": float(observed), "p_value": p_value}


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return mean, std
