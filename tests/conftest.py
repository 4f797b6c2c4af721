"""Shared fixtures: tiny hand-made events, and one tiny trained model per objective for the whole session."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import polars as pl
import pytest

from bertrec.data.sequences import build_sequences


def make_events(rows: list[tuple[str, str, str, float]]) -> pl.DataFrame:
    """Canonical events from (user, item, action, timestamp) tuples, event_index in list order."""
    users, items, actions, times = zip(*rows)
    return pl.DataFrame(
        {"user_id": users, "item_id": items, "action": actions, "timestamp": times, "event_index": range(len(rows))},
        schema={"user_id": pl.String, "item_id": pl.String, "action": pl.String, "timestamp": pl.Float64,
                "event_index": pl.Int64},
    )


@pytest.fixture
def small_sequences() -> pl.DataFrame:
    rows = [("u1", "a", "view", 0.0), ("u1", "b", "view", 10.0), ("u1", "b", "cart", 70.0), ("u1", "c", "view", 4000.0),
            ("u1", "a", "purchase", 90000.0), ("u2", "b", "view", 5.0), ("u2", "c", "view", 6.0),
            ("u2", "a", "view", 7.0), ("u3", "a", "view", 1.0), ("u3", "b", "view", 2.0)]  # fmt: skip
    return build_sequences(make_events(rows))


def run_without_bertrec(code: str, cwd) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``import bertrec`` fails, as in a downstream project."""
    prelude = "import sys\nsys.modules['bertrec'] = None\ntry:\n    import bertrec\n    raise SystemExit('bertrec importable')\n" \
              "except ImportError:\n    pass\n"  # fmt: skip
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
