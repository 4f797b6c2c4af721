"""Damaged files are refused by name: output folders and checkpoints carry manifests written last; a full disk
during a checkpoint leaves the previous one usable and the resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

import bertrec.training
from bertrec.integrity import MANIFEST_FILE, CorruptedFileError, is_complete, verify_manifest
from bertrec.modeling import load_model
from bertrec.recipes.pretrain import main as pretrain
from bertrec.recommend import Recommender
from bertrec.training import STATE_FILE, complete_checkpoints, latest_checkpoint

TINY = [
    "--synthetic_users", "150", "--hidden_size", "16", "--num_layers", "1", "--max_events", "10",
    "--num_epochs", "2", "--batch_size", "16", "--checkpoint_every_steps", "4", "--save_total_limit", "5",
    "--model_type", "gpt2", "--early_stopping_patience", "0", "--cpu_threads", "1",
]  # fmt: skip


def _flip_a_byte(path, offset_fraction=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * offset_fraction)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_output_folder_manifest_lists_every_file_and_is_written_last(pretrained):
    folder = pretrained["gpt2"]["dir"]
    assert is_complete(folder)
    listed = json.loads((folder / MANIFEST_FILE).read_text())["files"]
    assert {"model.safetensors", "tokenizer.json", "event_tokenizer.json", "metrics.json"} <= set(listed)
    assert not any(name.startswith("checkpoints/") for name in listed)  # checkpoints have manifests of their own
    assert "README.md" not in listed  # the model card is the user's to edit before pushing
    newest = max((folder / name).stat().st_mtime_ns for name in [*listed, "README.md"])
    assert (folder / MANIFEST_FILE).stat().st_mtime_ns >= newest
    verify_manifest(folder)


@pytest.mark.parametrize(
    "damage",
    [
        "truncated weights",
        "flipped byte in weights",
        "truncated tokenizer",
        "missing file",
        "edited model card",
        "no manifest",
    ],
)
def test_damaged_model_folders_are_refused_with_the_file_named(pretrained, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(pretrained["gpt2"]["dir"], folder, ignore=shutil.ignore_patterns("checkpoints"))
    weights, tokenizer = folder / "model.safetensors", folder / "tokenizer.json"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        expected = "model.safetensors is corrupted or truncated"
    elif damage == "flipped byte in weights":  # same size, loads fine without the manifest: silently wrong scores
        _flip_a_byte(weights, 0.9)
        expected = "model.safetensors is corrupted or truncated"
    elif damage == "truncated tokenizer":
        tokenizer.write_text(tokenizer.read_text()[:100])
        expected = "tokenizer.json is corrupted or truncated"
    elif damage == "missing file":
        (folder / "event_tokenizer.json").unlink()
        expected = "event_tokenizer.json is missing"
    elif damage == "edited model card":  # documentation, not an artifact: editing it is fine
        (folder / "README.md").write_text("# my own card\n")
        Recommender.from_pretrained(str(folder))
        return
    else:  # a save killed before its last write
        (folder / MANIFEST_FILE).unlink()
        expected = "is incomplete"
    with pytest.raises(CorruptedFileError, match=expected):
        Recommender.from_pretrained(str(folder))
    with pytest.raises(CorruptedFileError, match=expected):
        load_model(str(folder))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """One finished TINY run: the reference weights, and checkpoints to damage (in a copy)."""
    output = tmp_path_factory.mktemp("uninterrupted")
    pretrain([*TINY, "--output_dir", str(output)])
    return output


def test_corrupted_checkpoint_is_refused_and_an_earlier_one_is_named(uninterrupted, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(uninterrupted, output)
    *_, earlier, latest = complete_checkpoints(output / "checkpoints")
    _flip_a_byte(latest / "model.safetensors")
    with pytest.raises(
        CorruptedFileError, match=rf"model.safetensors is corrupted.*--resume_from_checkpoint \S*/{earlier.name}$"
    ):
        pretrain([*TINY, "--output_dir", str(output), "--resume_from_checkpoint", "latest"])
    (latest / STATE_FILE).write_text(json.dumps({"global_step": 10**6}))  # a state edited after the fact
    _flip_a_byte(latest / "model.safetensors")  # weights restored; the state file no longer matches
    with pytest.raises(CorruptedFileError, match=STATE_FILE):
        pretrain([*TINY, "--output_dir", str(output), "--resume_from_checkpoint", str(latest)])


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_resume_finishes_identically(
    uninterrupted, tmp_path, monkeypatch
):
    reference = uninterrupted
    victim = tmp_path / "victim"
    real_write_manifest, calls = bertrec.training.write_manifest, []  # checkpoint folders seen

    def full_disk_on_second_checkpoint(folder, *args, **kwargs):
        if ".checkpoint-" in str(folder):
            calls.append(folder)
        if len(calls) == 2:  # its model and optimizer files are already written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_manifest(folder, *args, **kwargs)

    monkeypatch.setattr(bertrec.training, "write_manifest", full_disk_on_second_checkpoint)
    with pytest.raises(OSError, match="could not write checkpoint .*No space left on device.*is untouched"):
        pretrain([*TINY, "--output_dir", str(victim)])
    monkeypatch.setattr(bertrec.training, "write_manifest", real_write_manifest)
    checkpoints = victim / "checkpoints"
    assert not list(checkpoints.glob(".checkpoint-*")), "the half-written checkpoint was left behind"
    assert not is_complete(victim)
    survivor = latest_checkpoint(checkpoints)
    verify_manifest(survivor)  # the previous checkpoint is intact and usable
    pretrain([*TINY, "--output_dir", str(victim), "--resume_from_checkpoint", "latest"])
    final, expected = load_file(victim / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys()
    assert all((final[name] == expected[name]).all() for name in expected)


def test_a_damaged_prepared_split_is_refused(small_sequences, tmp_path):
    from bertrec.data.splits import leave_one_out
    from bertrec.recipes.prepare import load_split, save_split

    save_split(leave_one_out(small_sequences), tmp_path / "split")
    assert load_split(tmp_path / "split").test.height == 2
    _flip_a_byte(tmp_path / "split" / "test.parquet", 0.3)
    with pytest.raises(CorruptedFileError, match="prepared split .*test.parquet is corrupted"):
        load_split(tmp_path / "split")
