"""Evaluation, saving and loading of an FSDP-sharded model give what the unsharded model gives.

accelerate 1.15 forms no FSDP group on a machine without GPUs (``distributed_type`` falls back to MULTI_CPU or
NO), so the recipe's FSDP path cannot run end to end here. This test shards the model the way accelerate's
FSDP2 plugin does (``fully_shard`` on each transformer block, then on the loss module that training calls) in
two gloo processes, and checks the pieces the training loop and the recipe run outside the sharded forward:
``gathered_parameters`` around validation and saving, and ``load_full_state_dict`` for the best weights.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent(
    """
    import copy, json, sys
    import torch, torch.distributed as dist
    from safetensors.torch import load_file
    import numpy as np
    from torch.distributed.fsdp import fully_shard

    from bertrec.collators import TokenLayout, pad_sequences
    from bertrec.data.cleaning import clean_events
    from bertrec.data.sequences import build_sequences
    from bertrec.data.splits import leave_one_out
    from bertrec.data.synthetic import SyntheticShopConfig, generate_shop_log
    from bertrec.evaluation import evaluate_model
    from bertrec.losses import ItemLoss
    from bertrec.modeling import build_model, objective_for
    from bertrec.sharding import full_state_dict, gathered_parameters, is_sharded, load_full_state_dict, save_weights
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from bertrec.tokenization import EventTokenizer
    from bertrec.training import Objective

    dist.init_process_group("gloo")
    rank, out, model_type = dist.get_rank(), sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    events, _ = clean_events(generate_shop_log(SyntheticShopConfig(n_users=150, n_items=200)))
    split = leave_one_out(build_sequences(events))
    tokenizer = EventTokenizer.build(split.train, layout="item", max_events=12)
    model = build_model(
        model_type=model_type, vocab_size=tokenizer.vocab_size, max_positions=12, hidden_size=16, num_layers=2,
        dropout=0.0, pad_token_id=tokenizer.pad_id,
    )
    loss = ItemLoss(model, item_offset=tokenizer.item_offset, num_items=tokenizer.num_items)
    initial = copy.deepcopy(loss)
    reference = copy.deepcopy(loss)
    blocks = [m for m in loss.modules() if type(m).__name__ in loss._no_split_modules]  # as accelerate picks them
    for block in blocks:
        fully_shard(block)
    fully_shard(loss)
    windows = tokenizer.encode_training_windows(split.train, min_events=2)[:96]
    batch = pad_sequences(windows, tokenizer.pad_id)
    objective = Objective(objective_for(model_type), TokenLayout.from_tokenizer(tokenizer))
    lengths = np.array([len(w) for w in windows])
    noise = objective.noise(np.arange(len(windows)), lengths, seed=0, epoch=0)
    inputs, labels = objective.inputs_and_labels(batch, noise)
    for module in (loss, reference):  # the same batch in both processes: FSDP's mean gradient is the batch's
        optimizer = torch.optim.AdamW(module.parameters(), lr=0.01)
        for _ in range(3):
            module(inputs, batch["attention_mask"], labels).backward()
            optimizer.step()
            optimizer.zero_grad()
    weight = blocks[0].get_parameter(
        "attention.self.query.weight" if model_type == "bert" else "attn.c_attn.weight"
    )
    with gathered_parameters(loss):
        sharded = evaluate_model(model, tokenizer, split.valid)
    full = full_state_dict(model)  # a collective; None off rank 0
    if rank == 0:
        save_weights(model, f"{out}/best.safetensors", full)  # as training keeps its best weights
        model.save_pretrained(f"{out}/hf", state_dict=full)  # as the recipe saves its output
    dist.barrier()
    loaded = (AutoModelForMaskedLM if model_type == "bert" else AutoModelForCausalLM).from_pretrained(f"{out}/hf")
    saved_error = max(
        (value - expected_value).abs().max().item()
        for value, expected_value in zip(loaded.state_dict().values(), reference.model.state_dict().values())
    )
    saved = load_file(f"{out}/best.safetensors")
    expected = reference.model.state_dict()
    weight_error = max((saved[k] - expected[k]).abs().max().item() for k in saved)
    load_full_state_dict(model, {k: v for k, v in initial.model.state_dict().items() if k in saved})
    with gathered_parameters(loss):
        restored = evaluate_model(model, tokenizer, split.valid)
    if rank == 0:
        result = {
            "world_size": dist.get_world_size(),
            "sharded": is_sharded(loss) and type(weight).__name__ == "DTensor",
            "local_rows": weight.to_local().shape[0],
            "full_rows": weight.shape[0],
            "metrics_sharded": sharded,
            "metrics_reference": evaluate_model(reference.model, tokenizer, split.valid),
            "metrics_restored": restored,
            "metrics_initial": evaluate_model(initial.model, tokenizer, split.valid),
            "saved_keys": sorted(saved),
            "weight_error": weight_error,
            "save_pretrained_error": saved_error,
        }
        with open(f"{out}/result.json", "w") as handle:
            json.dump(result, handle)
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("model_type", ["gpt2", pytest.param("bert", marks=pytest.mark.slow)])  # bert: 11 s
def test_sharded_model_evaluates_saves_and_loads_like_the_unsharded_one(tmp_path, model_type):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(_free_port()), str(script), str(tmp_path), model_type]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["world_size"] == 2 and outcome["sharded"]
    assert outcome["local_rows"] * 2 == outcome["full_rows"]  # each process holds half of each weight
    for key in ("ndcg@10", "hr@10", "mrr@10"):
        assert abs(outcome["metrics_sharded"][key] - outcome["metrics_reference"][key]) < 1e-9, key
        assert abs(outcome["metrics_restored"][key] - outcome["metrics_initial"][key]) < 1e-9, key
    assert outcome["metrics_sharded"]["ndcg@10"] != outcome["metrics_initial"]["ndcg@10"]  # training moved it
    assert outcome["weight_error"] < 1e-5 and outcome["save_pretrained_error"] < 1e-5
    embedding = "bert.embeddings.word_embeddings.weight" if model_type == "bert" else "transformer.wte.weight"
    assert embedding in outcome["saved_keys"] and len(outcome["saved_keys"]) > 10
