"""The markdown tables of ``throughput.py``'s JSON results (one block per section, with its machine and command)."""

from __future__ import annotations


def _head(section: dict) -> str:
    gpu = section.get("gpu") or "no GPU"
    return f"{section['machine']}, {gpu}, torch {section['torch']}, {section['date']}; `{section['command']}`\n\n"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n"


def _num(value) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


def data(section: dict) -> str:
    rows = [
        [
            _num(r["events"]),
            _num(r["events_after_cleaning"]),
            r["seconds"],
            _num(r["events_per_second"]),
            _num(r["peak_rss_mb"]),
            ", ".join(f"{k} {v}" for k, v in r["stages_seconds"].items()),
            f"{r['k_core_seconds']} ({r['k_core_rounds']} rounds)",
        ]
        for r in section["runs"]
    ]
    header = ["events", "after cleaning", "seconds", "events/s", "peak RSS MB", "stages (s)", "k-core s"]
    return (
        f"### Data path: Parquet to training windows ({section['cleaning']})\n\n"
        + _head(section)
        + _table(header, rows)
    )


def bucketed(section: dict) -> str:
    rows = [
        [
            _num(r["events"]),
            _num(r["events_after_cleaning"]),
            f"{_num(r['buckets'])} (largest {_num(r['largest_bucket_events'])} events)",
            r["seconds"],
            _num(r["events_per_second"]),
            _num(r["peak_rss_mb"]),
            ", ".join(f"{k} {v}" for k, v in r["stages_seconds"].items()),
        ]
        for r in section["runs"]
    ]
    header = ["events", "after cleaning", "buckets", "seconds", "events/s", "peak RSS MB", "passes (s)"]
    return (
        f"### Larger-than-memory path: Parquet to training windows one bucket of users at a time "
        f"({section['cleaning']}, same logs)\n\n" + _head(section) + _table(header, rows)
    )


def scale(section: dict) -> str:
    """The three preparation paths on one log side by side, then training from the Spark folder."""
    rows = []
    for run in section["runs"]:
        for path, name in (("spark", "Spark (local, 2 cores)"), ("bucketed", "bucketed"), ("in_memory", "in memory")):
            if path not in run:
                continue
            r = run[path]
            peaks = r["peak_rss_mb"] if isinstance(r["peak_rss_mb"], dict) else {"this process": r["peak_rss_mb"]}
            rows.append(
                [
                    _num(run["events"]),
                    name,
                    r["seconds"],
                    _num(r["events_per_second"]),
                    ", ".join(f"{k} {_num(v)}" for k, v in peaks.items()),
                    ", ".join(f"{k} {v}" for k, v in r["stages_seconds"].items()),
                ]
            )
        t = run.get("training")
        if t:
            rows.append(
                [
                    _num(run["events"]),
                    "training from the Spark folder",
                    t["seconds_watched"],
                    f"{t['logged_steps']} log lines with a loss",
                    f"peak {_num(t['peak_rss_mb'])} (at the training loop {_num(t['rss_mb_at_training_loop'])})",
                    f"{t['seconds_to_training_loop']} s to the training loop"
                    if t["seconds_to_training_loop"] is not None
                    else f"still loading when stopped after {t['seconds_watched']} s",
                ]
            )
    header = ["events", "path", "seconds", "events/s", "peak RSS MB", "stages (s)"]
    return (
        f"### One log, three preparation paths side by side, then training from the prepared folder "
        f"({section['cleaning']})\n\n" + _head(section) + _table(header, rows)
    )


def training_memory(section: dict) -> str:
    """Training from a bucketed folder at a fixed catalogue and user count: peak RSS per phase of a whole run."""
    rows = []
    for run in section["runs"]:
        b, t = run["bucketed"], run["training"]
        phases = t.get("peak_rss_mb_by_phase") or {}
        anonymous = t.get("peak_anonymous_rss_mb_by_phase") or {}
        rows.append(
            [
                _num(run["events"]),
                f"{_num(run['users'])} / {_num(run['items'])}",
                _num(b["train_windows"]),
                f"{b['seconds']} s, {_num(b['peak_rss_mb'])} MB",
                *(_phase_cell(phases, anonymous, name) for name in TRAINING_PHASES),
                _num(t["peak_rss_mb"]),
                f"{t['seconds_watched']} s" + ("" if t.get("completed") else " (did not finish)"),
            ]
        )
    header = ["events", "users / items", "training windows", "bucketed prepare", *TRAINING_PHASES, "peak RSS MB"]
    header += ["training run"]
    return (
        f"### Training from a prepared folder: peak RSS (MB) of one process, at a fixed catalogue "
        f'({section["cleaning"]}; "own": without file-backed pages such as the memory-mapped windows)\n\n'
        + _head(section)
        + _table(header, rows)
    )


TRAINING_PHASES = ("loading", "training and validation", "final evaluation")


def _phase_cell(phases: dict, anonymous: dict, name: str) -> str:
    return f"{_num(phases.get(name))} ({_num(anonymous.get(name))} own)" if anonymous else _num(phases.get(name))


def training(section: dict) -> str:
    peers = {(r["model"], r["hidden_size"], r["num_layers"]): r for r in section["recbole"]}
    names = {"gpt2": "SASRec", "bert": "BERT4Rec"}
    rows = []
    for r in section["bertrec"]:
        peer = peers.get((names[r["model_type"]], r["hidden_size"], r["num_layers"]))
        rows.append(
            [
                f"{r['model_type']} {r['hidden_size']}x{r['num_layers']}",
                _num(r["supervised_events_per_second"]),
                _num(r["tokens_per_second"]),
                r["padding_share"],
                r["epoch_seconds_estimate"],
                f"{r['achieved_gflops']} ({100 * r['share_of_matmul_peak']:.0f}%)",
                peer and f"{peer['samples_per_second']:.1f}",
                peer and peer["epoch_seconds_estimate"],
                peer and f"{peer['epoch_seconds_estimate'] / r['epoch_seconds_estimate']:.0f}x",
            ]
        )
    header = [
        "model (hidden x layers)",
        "supervised events/s",
        "tokens/s",
        "padding",
        "s/epoch",
        "GFLOP/s (of matmul peak)",
        "RecBole samples/s",
        "RecBole s/epoch",
        "epoch time ratio",
    ]
    return (
        f"### Training step ({section['data']}, {_threads(section['threads'])}; matmul peak "
        f"{section['matmul_peak_gflops']} GFLOP/s)\n\n" + _head(section) + _table(header, rows)
    )


def profile(section: dict) -> str:
    ops = ", ".join(f"`{p['op']}` {100 * p['share']:.0f}%" for p in section["top_ops"])
    return f"### Where a training step's time goes ({section['model']}, {_threads(section['threads'])})\n\n" + (
        _head(section) + f"Self CPU time by operator: {ops}.\n\n"
    )


def evaluation(section: dict) -> str:
    rows = [[_num(r["items"]), r["users"], r["seconds"], r["users_per_second"]] for r in section["runs"]]
    header = ["catalogue items", "users", "seconds", "users/s"]
    return (
        f"### Full-catalogue evaluation ({section['model']}, {_threads(section['threads'])})\n\n"
        + _head(section)
        + _table(header, rows)
    )


def latency(section: dict) -> str:
    row = [
        _num(section["items"]),
        section["history_events"],
        section["p50_ms"],
        section["p99_ms"],
        section["batch_histories_per_second"],
    ]
    header = ["catalogue items", "history events", "p50 ms", "p99 ms", f"batch of {section['batch']}: histories/s"]
    return (
        f"### Recommendation latency (`Recommender`, {_threads(section['threads'])})\n\n"
        + _head(section)
        + _table(header, [row])
    )


def million(section: dict) -> str:
    row = [
        _num(section["items"]),
        _num(section["training_events"]),
        section["steps"],
        section["step_seconds"],
        section["valid_users_per_second"],
        _num(section["peak_rss_mb"]),
    ]
    header = ["catalogue items", "training events", "steps", "s/step", "eval users/s", "peak RSS MB"]
    return f"### A 1M-item catalogue ({section['loss']})\n\n" + _head(section) + _table(header, [row])


def semantic(section: dict) -> str:
    ids = section["id_model"]
    rows = [
        ["ids (one row per item)", _num(section["id_item_parameters"]), "—", "—", ids["users_per_second"]],
        [
            f"semantic IDs only ({section['attribute_values']} code tokens)",
            _num(section["semantic_item_parameters"]),
            f"{section['semantic_share']:.4%}",
            section["compose_seconds"],
            section["eval_users_per_second"],
        ],
    ]
    header = ["item tokens", "item parameters", "share of the id table", "s to compose every row", "eval users/s"]
    codes = section["codes"]
    note = (
        f"{_num(codes['distinct_codes'])} distinct code tuples over {_num(section['items'])} items, "
        f"{_num(codes['items_sharing_codes'])} told apart by the dedup level (up to {codes['max_dedup']}); codes "
        f"made in {section['code_seconds']} s.\n\n"
    )
    return (
        f"### Semantic-ID item tokens at {_num(section['items'])} items ({_threads(section['threads'])})\n\n"
        + _head(section)
        + _table(header, rows)
        + note
    )


def time_to_quality(section: dict) -> str:
    rows = [
        [
            r["dataset"] + (f" (measured {r['measured']})" if r.get("measured") else ""),
            r["ours"],
            r["peer"] + (f" ({r['peer_date']})" if r.get("peer_date") else ""),
            SETTINGS[r["setting"]],
            round(r["peer_best_valid_ndcg@10"], 4),
            f"{r['peer_seconds_to_best']} ({r['peer_epochs_run']} epochs)",
            round(r["ours_best_valid_ndcg@10"], 4),
            r["ours_seconds_to_reach"] or "never",
            f"{r['speedup']}x" if r["speedup"] else "—",
            _num(r.get("ours_seconds_to_98_percent")),
            _num(r.get("ours_seconds_to_own_best")),
        ]
        for r in section["runs"]
    ]
    header = [
        "dataset",
        "ours (chosen on validation by quality.py)",
        "converged peer (quality.py row)",
        "validated with seen items",
        "peer best valid NDCG@10",
        "peer s to best",
        "ours best",
        "ours s to reach the peer's best",
        "speedup",
        "ours s to 98% of it",
        "ours s to own best",
    ]
    return (
        "### Wall time to each converged peer's best validation NDCG@10 (1 thread each, same split and sizes; "
        "the peer's seconds and best are its `quality.py` row's, ours are trained by this section in the "
        "peer's validation setting)\n\n" + _head(section) + _table(header, rows)
    )


SETTINGS = {"plain": "kept (RecBole's own)", "excluded": "excluded"}


def markdown(results: dict) -> str:
    order = ("data", "bucketed", "scale", "training_memory", "training", "profile", "evaluation", "latency")
    order += ("million", "semantic")
    order += ("time_to_quality",)
    return "".join(globals()[name](results[name]) for name in order if name in results)
