"""The pieces of the quality benchmark's protocol that every reported comparison depends on."""

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
        for protocol in ("loo", "temporal", "target"):
            if protocol == "target" and spec.target_action is None:
                continue
            arguments = quality_protocol.data_arguments(spec, Path(f"/data/{name}.parquet"), protocol)
            (parsed,) = parse_args((DataArguments,), quality_protocol.data_flags(arguments))
            assert parsed == arguments
