import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bertrec.integrity import write_manifest
from bertrec.modeling import build_model
from bertrec.training import STATE_FILE, _load_best, complete_checkpoints, epoch_batches, latest_checkpoint


def test_epoch_batches_are_seeded_mixed_or_grouped_by_length_and_split_across_processes():
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    for grouped in (False, True):
        one = epoch_batches(lengths, 16, seed=1, epoch=0, rank=0, world=1, group_by_length=grouped)
        again = epoch_batches(lengths, 16, 1, 0, 0, 1, group_by_length=grouped)
        assert [b.tolist() for b in one] == [b.tolist() for b in again]
        next_epoch = epoch_batches(lengths, 16, 1, 1, 0, 1, group_by_length=grouped)
        assert [b.tolist() for b in one] != [b.tolist() for b in next_epoch]
        assert sorted(np.concatenate(one).tolist()) == list(range(1000))  # every sequence once per epoch
        spread = np.mean([np.ptp(lengths[b]) for b in one])
        # grouped: similar lengths, little padding; mixed: each batch spans about the whole range of lengths,
        # so every batch weighs short and long windows alike
        assert spread < 10 if grouped else spread > 70
        ranks = [epoch_batches(lengths, 8, 1, 0, rank, 2, group_by_length=grouped) for rank in (0, 1)]
        assert len(ranks[0]) == len(ranks[1])  # same number of steps on every process
        assert not set(np.concatenate(ranks[0]).tolist()) & set(np.concatenate(ranks[1]).tolist())


def test_best_weights_must_belong_to_the_model(tmp_path):
    model = build_model(model_type="gpt2", vocab_size=30, max_positions=8, hidden_size=8, num_heads=2)
    model.save_pretrained(tmp_path)
    write_manifest(tmp_path)
    _load_best(model, tmp_path / "model.safetensors")  # the tied lm_head is absent from the file, and that is fine
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file({**state, "stray.weight": torch.zeros(1)}, tmp_path / "other.safetensors")
    write_manifest(tmp_path)
    with pytest.raises(ValueError, match="does not match"):
        _load_best(model, tmp_path / "other.safetensors")


def test_complete_checkpoints_are_ordered_by_step_not_by_name(tmp_path):
    for name in ("checkpoint-9", "checkpoint-12", "checkpoint-100", "checkpoint-7", ".checkpoint-200.tmp"):
        (tmp_path / name).mkdir()
    for name in ("checkpoint-9", "checkpoint-12", "checkpoint-100", ".checkpoint-200.tmp"):
        (tmp_path / name / STATE_FILE).write_text("{}")
    # checkpoint-7 has no trainer state (never renamed into place complete); the temp folder is not a checkpoint
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-12", "checkpoint-100"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-100"
