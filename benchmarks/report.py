"""The front page of BENCHMARKS.md: a summary table and plots, drawn from the committed result files only.

    python benchmarks/report.py      # rewrite the summary block of BENCHMARKS.md and benchmarks/results/*.png

Inputs: ``benchmarks/results/quality_*_loo.json`` (written by ``quality.py``) and ``throughput.json`` (written by
``throughput.py``). Outputs: ``benchmarks/results/summary.json`` (every number the table and the plots show),
``summary_ndcg.png``, ``quality_vs_time.png``, ``data_throughput.png``, the block of BENCHMARKS.md between the
summary markers, and the README's headline table. ``tests/test_benchmark_report.py`` rebuilds all of it from the
committed JSON and fails on any difference, so the front pages can only say what the result files say.

bertrec's row is its best on **validation** NDCG@10, as the quality tables choose it (never on test). The
peer and the baseline shown are the strongest on **test**: the hardest comparison for bertrec, and the only
common ground (RecBole validates by its own rules, so its validation figures are not ours). All in the dataset's
headline setting (seen items excluded, or kept where repeats are the point). A peer row counts as converged when
its own early stopping ended it; a budget-stopped peer is shown only where no converged one exists, and marked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
README = ROOT / "README.md"
START, END = "<!-- summary:start (benchmarks/report.py) -->", "<!-- summary:end -->"
HEADLINE_START, HEADLINE_END = "<!-- headline:start (benchmarks/report.py) -->", "<!-- headline:end -->"
NAMES = {
    "recbole-sasrec": "RecBole SASRec", "recbole-bert4rec": "RecBole BERT4Rec", "recbole-gru4rec": "RecBole GRU4Rec",
    "rectools-sasrec": "RecTools SASRec", "rectools-bert4rec": "RecTools BERT4Rec", "replay-sasrec": "RePlay SasRec",
    "markov": "Markov", "recent": "recent items", "popular": "popularity", "lstm": "LSTM", "content-knn": "content kNN",
}  # fmt: skip
DATASETS = ("ml-100k", "amazon-beauty", "yoochoose-100k", "tmall-2014-brand", "amazon-office", "amazon-scientific")
BASELINES = {"popular", "markov", "recent", "content-knn", "lstm"}
PEER_PREFIXES = ("recbole-", "rectools-", "replay-")
CONVERGED = {"early_stopping", "early stopping"}
LABELS = {"bertrec": "bertrec (best)", "peer": "strongest converged peer", "baseline": "strongest baseline"}


def kind(model: str) -> str:
    if model in BASELINES:
        return "baseline"
    return "peer" if model.startswith(PEER_PREFIXES) else "bertrec"


def _pair(row: dict, setting: str) -> list[float]:
    mean, std = row[setting]["ndcg@10"]
    return [round(mean, 4), round(std, 4)]


def _best_on_validation(rows: list[dict]) -> dict | None:
    scored = [r for r in rows if r.get("valid_ndcg@10")]
    return max(scored, key=lambda r: r["valid_ndcg@10"][0]) if scored else None


def _strongest(rows: list[dict], setting: str) -> dict | None:
    return max(rows, key=lambda r: r[setting]["ndcg@10"][0]) if rows else None


def dataset_summary(result: dict) -> dict:
    """Our best row, the strongest converged peer (else budget-stopped one, marked), the strongest baseline,
    and the paired test of ours against that peer where ``quality.py`` stored one."""
    setting = result.get("headline", "excluded")
    rows = result["rows"]
    ours = _best_on_validation([r for r in rows if kind(r["model"]) == "bertrec"])
    peers = [r for r in rows if kind(r["model"]) == "peer"]
    converged = [r for r in peers if r["training"].get("stopped_by") in CONVERGED]
    peer = _strongest(converged, setting) or _strongest(peers, setting)
    baseline = _strongest([r for r in rows if kind(r["model"]) == "baseline"], setting)

    def entry(row: dict | None) -> dict | None:
        if row is None:
            return None
        wall = row["training"].get("wall_seconds") or [None]
        return {"model": row["model"], "ndcg@10": _pair(row, setting), "seeds": row["seeds"], "train_s": wall[0]}

    summary = {
        "dataset": result["dataset"],
        "setting": setting,
        "test_users": result.get("test_users"),
        "items": result["catalogue_items"],
        "bertrec": entry(ours),
        "peer": entry(peer),
        "peer_converged": peer is not None and peer in converged,
        "baseline": entry(baseline),
    }
    if ours and peer:
        summary["p_vs_peer"] = next(
            (round(c["p_value"], 4) for c in result.get("comparisons", []) if c["other"] == peer["model"]), None
        )
    summary["rows"] = [  # every trained row, for the quality-against-time plot
        {"model": r["model"], "kind": kind(r["model"]), "ndcg@10": _pair(r, setting), "train_s": w[0]}
        for r in rows
        if kind(r["model"]) != "baseline" and (w := r["training"].get("wall_seconds"))
    ]
    return summary


def throughput_points(throughput: dict) -> dict[str, list[list[float]]]:
    """Events/s against events for each data path. The scale section's runs, where there are any, alone: they
    measured the three paths side by side on one log, while the older sections ran on other days (this
    machine's absolute rates move by up to 2x between days)."""
    runs = throughput.get("scale", {}).get("runs", [])
    if runs:
        paths = {"spark": "spark", "bucketed": "bucketed", "in_memory": "in memory"}
        rows = [(name, run[path]) for run in runs for path, name in paths.items() if path in run]
    else:
        rows = [("in memory", run) for run in throughput.get("data", {}).get("runs", [])]
        rows += [("bucketed", run) for run in throughput.get("bucketed", {}).get("runs", [])]
    points: dict[str, list[list[float]]] = {}
    for name, run in rows:
        points.setdefault(name, []).append([run["events"], run["events_per_second"]])
    return {name: sorted(values) for name, values in points.items()}


def build(results: Path = RESULTS) -> dict:
    """Every number of the front page, from the result files in ``results``."""
    datasets = []
    for name in DATASETS:
        path = results / f"quality_{name}_loo.json"
        if path.is_file():
            datasets.append(dataset_summary(json.loads(path.read_text())))
    throughput = results / "throughput.json"
    return {
        "datasets": datasets,
        "throughput": throughput_points(json.loads(throughput.read_text())) if throughput.is_file() else {},
    }


def _cell(entry: dict | None, marked: bool = False) -> str:
    if entry is None:
        return "not run"
    mean, std = entry["ndcg@10"]
    value = f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"
    return f"{value} `{entry['model']}`" + (" (budget-stopped)" if marked else "")


def _ratio(ours: dict | None, other: dict | None) -> str:
    if not ours or not other or not other["ndcg@10"][0]:
        return ""
    return f"{ours['ndcg@10'][0] / other['ndcg@10'][0]:.2f}x"


def table(summary: dict) -> str:
    """The summary table (markdown)."""
    lines = [
        "| dataset (test users, items; seen items) | bertrec, best on validation | strongest converged peer "
        "| strongest baseline | vs peer (paired p) | vs baseline |",
        "|---|---|---|---|---|---|",
    ]
    for d in summary["datasets"]:
        seen = "excluded" if d["setting"] == "excluded" else "kept"
        p = d.get("p_vs_peer")
        p = "" if p is None else (" (p < 0.001)" if p < 0.001 else f" (p {p:.3f})")
        lines.append(
            f"| {d['dataset']} ({d['test_users']:,}, {d['items']:,}; {seen}) | {_cell(d['bertrec'])} "
            f"| {_cell(d['peer'], d['peer'] is not None and not d['peer_converged'])} | {_cell(d['baseline'])} "
            f"| {_ratio(d['bertrec'], d['peer'])}{p if d['peer'] else ''} | {_ratio(d['bertrec'], d['baseline'])} |"
        )
    return "\n".join(lines)


def headline(summary: dict) -> str:
    """The README's table: one line per public log, the best of the three in bold."""
    lines = [
        HEADLINE_START,
        "| public log | bertrec | strongest converged peer | strongest baseline |",
        "|---|---|---|---|",
    ]
    for d in summary["datasets"]:
        entries = [d["bertrec"], d["peer"], d["baseline"]]
        top = max(e["ndcg@10"][0] for e in entries if e)
        cells = []
        for number, entry in enumerate(entries):
            if entry is None:
                cells.append("not run")
                continue
            value = f"**{entry['ndcg@10'][0]:.4f}**" if entry["ndcg@10"][0] == top else f"{entry['ndcg@10'][0]:.4f}"
            if not number and entry["seeds"] < 3:  # the README's note promises 3 seeds; say where a row has fewer
                value += f" ({entry['seeds']} seed{'s' if entry['seeds'] > 1 else ''})"
            if number:  # peers and baselines are named; bertrec's row names are in BENCHMARKS.md
                budget = ", budget-stopped" if number == 1 and not d["peer_converged"] else ""
                value += f" ({NAMES.get(entry['model'], entry['model'])}{budget})"
            cells.append(value)
        lines.append(f"| {d['dataset']} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, HEADLINE_END])


def _replace_block(text: str, start: str, end: str, block: str) -> str:
    before, rest = text.split(start, 1)
    return before + block + rest.split(end, 1)[1]


def front_page(summary: dict) -> str:
    """The block of BENCHMARKS.md between the markers."""
    return "\n".join(
        [
            START,
            "",
            "Test NDCG@10, leave-one-out, full ranking over the catalogue, ties counted against the model; bertrec",
            "mean ± std over its seeds, its row chosen on validation NDCG@10; peers and baselines 1 seed, the",
            "strongest on test shown (the hardest comparison). Built by `python benchmarks/report.py` from",
            "`benchmarks/results/*.json` (the numbers: `summary.json`); the per-dataset tables follow below.",
            "",
            table(summary),
            "",
            "![test NDCG@10 per dataset](benchmarks/results/summary_ndcg.png)",
            "![quality against training time](benchmarks/results/quality_vs_time.png)",
            "![data-path throughput](benchmarks/results/data_throughput.png)",
            "",
            END,
        ]
    )


def plot(summary: dict, results: Path) -> list[Path]:
    """The three figures, as PNG files in ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    written = []
    datasets = summary["datasets"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots()
    groups = (("bertrec", "tab:blue"), ("peer", "tab:orange"), ("baseline", "tab:gray"))
    for offset, (group, color) in enumerate(groups):
        xs = [i + (offset - 1) * 0.27 for i in range(len(datasets))]
        means = [d[group]["ndcg@10"][0] if d[group] else 0 for d in datasets]
        stds = [d[group]["ndcg@10"][1] if d[group] else 0 for d in datasets]
        axes.bar(xs, means, width=0.27, yerr=stds, color=color, label=LABELS[group], capsize=3)
    axes.set_xticks(range(len(datasets)), [d["dataset"] for d in datasets], fontsize=8)
    axes.set_ylabel("test NDCG@10")
    axes.legend(fontsize=8)
    written.append(results / "summary_ndcg.png")
    figure.savefig(written[-1], dpi=110)

    figure = Figure(figsize=(12, 6), layout="constrained")
    grid = figure.subplots(2, 3).ravel()
    for axes, d in zip(grid, datasets):
        for group, color in (("bertrec", "tab:blue"), ("peer", "tab:orange")):
            points = [r for r in d["rows"] if r["kind"] == group]
            axes.scatter([r["train_s"] for r in points], [r["ndcg@10"][0] for r in points], color=color, label=group)
        if d["baseline"]:
            axes.axhline(d["baseline"]["ndcg@10"][0], color="tab:gray", linestyle="--", label=d["baseline"]["model"])
        axes.set_xscale("log")
        axes.set_title(d["dataset"], fontsize=9)
        axes.set_xlabel("training wall seconds (2 CPU cores, shared)", fontsize=7)
        axes.set_ylabel("test NDCG@10", fontsize=7)
        axes.legend(fontsize=6)
    written.append(results / "quality_vs_time.png")
    figure.savefig(written[-1], dpi=100)

    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    for name, points in summary["throughput"].items():
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("events in the log")
    axes.set_ylabel("events per second, raw log to training windows")
    axes.legend()
    written.append(results / "data_throughput.png")
    figure.savefig(written[-1], dpi=110)
    return written


def write(results: Path = RESULTS, benchmarks: Path = BENCHMARKS, readme: Path = README) -> dict:
    """Rebuild summary.json, the figures, the summary block of ``benchmarks`` and the headline of ``readme``."""
    summary = build(results)
    (results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, results)
    text = benchmarks.read_text()
    if START in text:
        text = _replace_block(text, START, END, front_page(summary))
    else:  # first run: the block goes after the title and its paragraph
        title, _, rest = text.partition("\n\n")
        intro, _, rest = rest.partition("\n\n")
        text = f"{title}\n\n{intro}\n\n## Summary\n\n{front_page(summary)}\n\n{rest}"
    benchmarks.write_text(text)
    readme.write_text(_replace_block(readme.read_text(), HEADLINE_START, HEADLINE_END, headline(summary)))
    return summary


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    write()
    print(f"written {RESULTS / 'summary.json'}, the figures, the summary of {BENCHMARKS} and {README}'s headline")


if __name__ == "__main__":
    main()
