"""BENCHMARKS.md's summary and plots are rebuilt from the committed result files without a difference."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import report  # noqa: E402


def copy_results(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    results.mkdir()
    for path in report.RESULTS.glob("*.json"):
        shutil.copy(path, results / path.name)
    shutil.copy(report.BENCHMARKS, tmp_path / "BENCHMARKS.md")
    shutil.copy(report.README, tmp_path / "README.md")
    return results, tmp_path / "BENCHMARKS.md"


def block(text: str, start: str = report.START, end: str = report.END) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def test_summary_and_plots_are_regenerated_from_the_committed_results_without_a_difference(tmp_path):
    results, benchmarks = copy_results(tmp_path)
    rebuilt = report.write(results, benchmarks, tmp_path / "README.md")
    committed = json.loads((report.RESULTS / "summary.json").read_text())
    stale = "the summary is stale: run `python benchmarks/report.py` and commit BENCHMARKS.md and the results"
    assert rebuilt == committed, stale
    assert block(benchmarks.read_text()) == block(report.BENCHMARKS.read_text()), stale
    headline = (report.HEADLINE_START, report.HEADLINE_END)
    assert block((tmp_path / "README.md").read_text(), *headline) == block(report.README.read_text(), *headline), stale
    assert report.BENCHMARKS.read_text().index(report.START) < 1000  # the report opens with its summary
    for name in ("summary_ndcg.png", "quality_vs_time.png", "data_throughput.png"):
        for folder in (results, report.RESULTS):  # drawn here, and committed beside the numbers
            figure = folder / name
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000, figure

    # a changed result changes the summary: the comparison above can fail
    path = results / "quality_ml-100k_loo.json"
    result = json.loads(path.read_text())
    best = next(row for row in result["rows"] if row["model"] == committed["datasets"][0]["bertrec"]["model"])
    best["excluded"]["ndcg@10"][0] += 0.01
    path.write_text(json.dumps(result))
    assert report.build(results)["datasets"][0] != committed["datasets"][0]


def test_rows_are_chosen_on_validation_for_bertrec_and_the_strongest_on_test_for_others():
    def row(model, valid, test, stopped=None):
        metrics = {"ndcg@10": [test, 0.0]}
        return {"model": model, "seeds": 1, "valid_ndcg@10": [valid, 0.0], "excluded": metrics,
                "training": {"wall_seconds": [10.0, 0.0], "stopped_by": stopped}}  # fmt: skip

    result = {
        "dataset": "d", "catalogue_items": 5, "test_users": 3, "comparisons": [],
        "rows": [
            row("sasrec", valid=0.30, test=0.10), row("sasrec-rope", valid=0.20, test=0.15),
            row("rectools-sasrec", valid=0.5, test=0.08, stopped="early_stopping"),
            row("replay-sasrec", valid=0.1, test=0.09, stopped="early_stopping"),
            row("recbole-sasrec", valid=0.9, test=0.12, stopped="budget"),
            row("markov", valid=0.1, test=0.07), row("popular", valid=0.2, test=0.01),
        ],
    }  # fmt: skip
    summary = report.dataset_summary(result)
    assert summary["bertrec"]["model"] == "sasrec"  # best validation, although sasrec-rope tests higher
    assert summary["peer"]["model"] == "replay-sasrec" and summary["peer_converged"]  # budget-stopped left out
    assert summary["baseline"]["model"] == "markov"
    # the README promises 3 seeds per bertrec row: a row with fewer says so
    assert "| d | **0.1000** (1 seed) | 0.0900 (RePlay SasRec) |" in report.headline({"datasets": [summary]})
