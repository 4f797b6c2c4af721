"""Shared fixtures: tiny hand-made events, and one tiny trained model per objective for the whole session."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import polars as pl
import pytest

from bertrec.args import LEGACY_REPRESENTATION_FLAGS
from bertrec.data.schema import CANONICAL_SCHEMA
from bertrec.data.sequences import build_sequences


def make_events(rows: list[tuple[str, str, str, float]], event_index: list[int] | None = None) -> pl.DataFrame:
    """Canonical events from (user, item, action, timestamp) tuples, event_index in list order unless given."""
    users, items, actions, times = zip(*rows) if rows else ((), (), (), ())
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "action": actions,
            "timestamp": times,
            "event_index": range(len(rows)) if event_index is None else event_index,
        },
        schema=CANONICAL_SCHEMA,
    )


@pytest.fixture
def small_sequences() -> pl.DataFrame:
    rows = [
        ("u1", "a", "view", 0.0),
        ("u1", "b", "view", 10.0),
        ("u1", "b", "cart", 70.0),
        ("u1", "c", "view", 4000.0),
        ("u1", "a", "purchase", 90000.0),
        ("u2", "b", "view", 5.0),
        ("u2", "c", "view", 6.0),
        ("u2", "a", "view", 7.0),
        ("u3", "a", "view", 1.0),
        ("u3", "b", "view", 2.0),
    ]
    return build_sequences(make_events(rows))


def run_without_bertrec(code: str, cwd) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``import bertrec`` fails, as in a downstream project."""
    prelude = textwrap.dedent(
        """
        import sys
        sys.modules["bertrec"] = None
        try:
            import bertrec
            raise SystemExit("bertrec importable")
        except ImportError:
            pass
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


TINY_PRETRAIN = [
    "--synthetic_users",
    "400",
    "--hidden_size",
    "32",
    "--num_layers",
    "1",
    "--max_events",
    "20",
    "--num_epochs",
    "3",
    "--batch_size",
    "32",
    "--learning_rate",
    "0.005",
    "--eval_batch_size",
    "256",
    "--early_stopping_patience",
    "0",
]


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> dict:
    """One tiny trained model per objective (and BERT's post-norm block as a causal decoder), shared by every test that
    needs a trained model."""
    from bertrec.recipes.pretrain import main

    runs = {}
    for model_type in ("bert", "gpt2", "bert-generation"):
        output = tmp_path_factory.mktemp(f"pretrained-{model_type}")
        metrics = main([*TINY_PRETRAIN, "--model_type", model_type, "--output_dir", str(output)])
        runs[model_type] = {"dir": output, "metrics": metrics}
    return runs


TINY_FINETUNE = ["--num_epochs", "4", "--batch_size", "16", "--learning_rate", "0.003", "--eval_batch_size", "256"]


@pytest.fixture(scope="session")
def finetuned(tmp_path_factory) -> dict:
    """Per architecture: a tiny base pretrained for the next-purchase split, and its LoRA fine-tune.

    The layouts carry action tokens, so the fine-tuned prompt is conditioned (``... <a:purchase> [MASK]``). These
    keep the one-position-per-token layouts and tied embeddings; ``tests/test_stacked_finetune.py`` fine-tunes
    the default representation.
    """
    from bertrec.recipes.finetune import main as finetune
    from bertrec.recipes.pretrain import main as pretrain

    runs = {}
    for model_type, layout in (("bert", "action item"), ("gpt2", "time action item")):
        base = tmp_path_factory.mktemp(f"base-{model_type}")
        pretrain_args = [
            *TINY_PRETRAIN,
            "--num_epochs",
            "3",
            "--model_type",
            model_type,
            "--layout",
            layout,
            *LEGACY_REPRESENTATION_FLAGS,
        ]
        pretrain([*pretrain_args, "--target_action", "purchase", "--output_dir", str(base)])
        output = tmp_path_factory.mktemp(f"lora-{model_type}")
        metrics = finetune(["--base_model", str(base), *TINY_FINETUNE, "--output_dir", str(output)])
        runs[model_type] = {"base": base, "dir": output, "metrics": metrics}
    return runs


_RELIABILITY_LINES: list[str] = []


@pytest.fixture(scope="session")
def reliability_summary() -> list[str]:
    """Lines the reliability tests add (bad inputs tried, kill points resumed); printed after the run."""
    return _RELIABILITY_LINES


def pytest_terminal_summary(terminalreporter) -> None:
    if _RELIABILITY_LINES:
        terminalreporter.section("reliability summary")
        for line in _RELIABILITY_LINES:
            terminalreporter.write_line(line)
