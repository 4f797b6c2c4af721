"""Two CPU processes through `accelerate launch` train and evaluate like one process, both from one bucketed
prepared folder (``recipes/prepare.py --events_per_bucket``), as a log too large for memory is trained on.

`accelerate launch` with ``recipes/accelerate_configs/cpu_two_processes.yaml`` (multi-GPU, 2 processes) on a
machine without a GPU starts two gloo processes (the
recipe passes ``cpu=True`` to the Accelerator when no accelerator device exists; without it accelerate 1.15
leaves each process undistributed, and both would train alone and write the same folder). Each process takes
half of every global batch (of mixed window lengths, the default) and its loss is weighted by its share of the
batch's labelled positions, and each window's random draws (here: whose next action is hidden) come from the
window and the epoch alone (``collators.window_noise``), so with dropout off the two runs compute the same
updates up to floating-point reduction order (measured: identical metrics to the last digit on this machine;
the tolerance allows two of 400 users to move across the cut-off). When the draws were seeded per process,
the first step already moved weights apart by twice the learning rate, and the runs ended 4 users apart.

The runs leave out the score tables (``--repeat_scores``, ``--transition_scores``): their cells indexed by gap
are sparse, and AdamW turns a float-order difference in a rarely hit cell's gradient into a full step, so even
one process with 16 x 2 gradient accumulation differs from batch 32 by as much as two processes do (measured:
epoch-1 NDCG@10 0.2843 against 0.2816). Their gradients are tested directly in tests/test_stacked.py and
tests/test_transitions.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bertrec.recipes.common import check_process_group
from tests.conftest import TINY_PRETRAIN

CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "accelerate_configs" / "cpu_two_processes.yaml"
TOLERANCE = 2 / 400 + 1e-9  # absolute NDCG@10 / HR@10 difference allowed between 1 and 2 processes: 2 users
DETERMINISTIC = ["--model_type", "gpt2", "--dropout", "0", "--attention_dropout", "0", "--num_epochs", "4"]
DETERMINISTIC += ["--repeat_scores", "false", "--transition_scores", "false"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _value(flag: str) -> str:
    return TINY_PRETRAIN[TINY_PRETRAIN.index(flag) + 1]


def _without(flags: list[str], *names: str) -> list[str]:
    drop = {i + offset for i, f in enumerate(flags) if f in names for offset in (0, 1)}
    return [f for i, f in enumerate(flags) if i not in drop]


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory) -> dict:
    """Both runs train from one bucketed folder (the scale path): its memory-mapped windows split between the
    processes, its split read from disk a bucket at a time and each bucket's users split between them."""
    from bertrec.data.synthetic import SyntheticShopConfig, generate_shop_log
    from bertrec.recipes.prepare import main as prepare
    from bertrec.recipes.pretrain import main

    data = tmp_path_factory.mktemp("prepared")
    log = generate_shop_log(SyntheticShopConfig(n_users=int(_value("--synthetic_users"))))
    log.drop("event_index").write_parquet(data / "log.parquet")  # the reader numbers the events itself
    folder = ["--output_dir", str(data / "folder"), "--events_per_bucket", "4000"]
    prepare(["--dataset", str(data / "log.parquet"), *folder, "--max_events", _value("--max_events")])
    assert len(list((data / "folder" / "split").glob("test-*.parquet"))) > 2  # several buckets to shard
    one = tmp_path_factory.mktemp("one-process")
    two = tmp_path_factory.mktemp("two-processes")
    model_flags = _without(TINY_PRETRAIN, "--synthetic_users", "--max_events")  # the folder holds those
    args = ["--prepared_dir", str(data / "folder"), *model_flags, *DETERMINISTIC]
    main([*args, "--batch_size", "32", "--cpu_threads", "1", "--output_dir", str(one)])
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG)]
    launch += ["--main_process_port", str(_free_port()), "-m", "bertrec.recipes.pretrain"]
    result = subprocess.run(
        [*launch, *args, "--batch_size", "16", "--output_dir", str(two)],  # 2 x 16 = the same global batches
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        "one": json.loads((one / "metrics.json").read_text()),
        "two": json.loads((two / "metrics.json").read_text()),
        "two_dir": two,
    }


def test_two_processes_really_ran(one_and_two_processes):
    assert one_and_two_processes["one"]["training"]["processes"] == 1
    assert one_and_two_processes["two"]["training"]["processes"] == 2
    checkpoint = sorted((one_and_two_processes["two_dir"] / "checkpoints").glob("checkpoint-*"))[-1]
    assert (checkpoint / "random_states_1.pkl").is_file()  # the second rank wrote its own state


def test_two_processes_take_the_same_steps_and_match_one(one_and_two_processes):
    one, two = one_and_two_processes["one"], one_and_two_processes["two"]
    assert two["training"]["steps"] == one["training"]["steps"]
    for part in ("valid", "test"):
        for metric in ("ndcg@10", "hr@10"):
            assert abs(two[part][metric] - one[part][metric]) <= TOLERANCE, (part, metric, one[part], two[part])
    for epoch_one, epoch_two in zip(one["training"]["history"], two["training"]["history"], strict=True):
        assert abs(epoch_one["ndcg@10"] - epoch_two["ndcg@10"]) <= TOLERANCE


def test_two_process_evaluation_counts_every_user_once(one_and_two_processes):
    one, two = one_and_two_processes["one"], one_and_two_processes["two"]
    evaluated = two["data"]["evaluated_users"]
    assert two["valid"]["users"] == two["test"]["users"] == evaluated == one["test"]["users"]
    assert two["baselines"]["markov"]["test"] == pytest.approx(one["baselines"]["markov"]["test"])  # no model noise


def test_a_launch_that_formed_no_group_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="group of 1"):
        check_process_group(1)
    check_process_group(2)


@pytest.mark.parametrize("name", ["multi_gpu_ddp.yaml", "cpu_two_processes.yaml", "multi_gpu_fsdp.yaml"])
def test_shipped_accelerate_configs_load_with_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIG.parent / name))
    assert config.num_processes == 2 and config.num_machines == 1
    assert str(config.distributed_type).endswith("FSDP" if "fsdp" in name else "MULTI_GPU")


def test_fsdp_config_builds_a_plugin_that_wraps_each_transformer_block():
    """The FSDP config's plugin (as accelerate builds it from the file) finds the blocks through the loss
    module, which names its model's `_no_split_modules`: without them every weight would be one group."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    from bertrec.losses import ItemLoss
    from bertrec.modeling import build_model

    options = load_config_from_file(str(CONFIG.parent / "multi_gpu_fsdp.yaml")).fsdp_config
    assert options["fsdp_version"] == 2
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy=options["fsdp_auto_wrap_policy"].lower(), state_dict_type="SHARDED_STATE_DICT"
    )
    for model_type, block in (("gpt2", "GPT2Block"), ("bert", "BertLayer"), ("gpt_neox", "GPTNeoXLayer")):
        model = build_model(model_type=model_type, vocab_size=50, max_positions=8, hidden_size=16, num_layers=2)
        loss = ItemLoss(model, item_offset=10, num_items=40)
        policy = fsdp2_prepare_auto_wrap_policy(plugin, loss)
        wrapped = [type(m).__name__ for m in loss.modules() if policy(m)]
        assert wrapped == [block, block], (model_type, wrapped)
