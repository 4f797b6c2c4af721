"""A run killed mid-training (SIGKILL) and resumed from its last checkpoint ends with the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

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
    "3",
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


def pretrain(output: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bertrec.cli", "pretrain", *ARGS, "--output_dir", str(output), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_run_resumes_to_identical_weights(tmp_path):
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = pretrain(uninterrupted)
    victim = pretrain(killed)
    checkpoints = killed / "checkpoints"
    deadline = time.time() + 240
    while not any(checkpoints.glob("checkpoint-6")) and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, f"run finished before it could be killed: {victim.stderr.read()[-2000:]}"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed / "metrics.json").exists()  # the killed run never looked complete
    resumed = pretrain(killed, "--resume_from_checkpoint", "latest")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    assert "resumed from" in resumed.stderr.read()
    final, expected = load_file(killed / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert final.keys() == expected.keys()
    for name in expected:
        assert (final[name] == expected[name]).all(), name
