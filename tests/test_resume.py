"""A run killed mid-training (SIGKILL) and resumed from its last checkpoint ends with the same weights."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from bertrec.integrity import is_complete
from bertrec.training import latest_checkpoint

ARGS = [
    "--synthetic_users",
    "150",
    "--hidden_size",
    "16",
    "--num_layers",
    "1",
    "--max_events",
    "10",
    "--num_epochs",
    "2",
    "--batch_size",
    "16",
    "--checkpoint_every_steps",
    "3",
    "--save_total_limit",
    "3",
    "--model_type",
    "gpt2",
    "--early_stopping_patience",
    "0",
]


def pretrain(output: Path, *extra: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bertrec.cli", "pretrain", *ARGS, "--output_dir", str(output), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def _wait_for(path: Path, process: subprocess.Popen, deadline: float) -> None:
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def test_runs_killed_at_random_points_resume_to_identical_weights(tmp_path, reliability_summary):
    """SIGKILL at K random points of one run (each resumed run is killed again), then a last resume."""
    rng = random.Random(6)  # fixed, so a failure names reproducible kill points
    # a checkpoint step, then a random delay into what follows; the run has 90 steps, so every kill lands in it
    kill_after = sorted(rng.sample(range(3, 66, 3), 2))  # two kills: a resumed run is killed again
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    reference = pretrain(uninterrupted, cwd=workdir)
    resumed_from = []
    for step in kill_after:
        victim = pretrain(killed, "--resume_from_checkpoint", "latest", cwd=workdir)
        _wait_for(killed / "checkpoints" / f"checkpoint-{step}", victim, time.time() + 240)
        time.sleep(rng.uniform(0.0, 0.2))
        assert victim.poll() is None, f"run finished before it could be killed: {victim.stderr.read()[-2000:]}"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert not is_complete(killed)  # a killed run never leaves a folder that looks complete
        resumed_from.append(latest_checkpoint(killed / "checkpoints"))
    final_run = pretrain(killed, "--resume_from_checkpoint", "latest", cwd=workdir)
    assert final_run.wait(timeout=300) == 0, final_run.stderr.read()[-3000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    assert "resumed from" in final_run.stderr.read()
    assert is_complete(killed) and is_complete(uninterrupted)
    assert not list(workdir.iterdir()), "a run wrote outside its --output_dir"
    assert {p.name for p in tmp_path.iterdir()} == {"uninterrupted", "killed", "cwd"}
    final, expected = load_file(killed / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert final.keys() == expected.keys()
    identical = all((final[name] == expected[name]).all() for name in expected)
    assert identical
    reliability_summary.append(
        f"kills: {len(kill_after)} SIGKILL points (after checkpoints {kill_after} + random delays; resumed from "
        f"{[p.name if p else 'start' for p in resumed_from]}), {len(kill_after)} resumes, final weights identical"
    )
