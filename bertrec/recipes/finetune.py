"""Fine-tune a pretrained bertrec model for a ranking task: LoRA adapters + a ranking head, or in full.

accelerate launch recipes/finetune.py --base_model outputs/pretrain --target_action purchase   # next purchase
accelerate launch recipes/finetune.py --base_model outputs/pretrain --task rerank --rerank_loss bpr
accelerate launch recipes/finetune.py --base_model outputs/pretrain --dataset new_period.csv --new_items true

The data arguments default to the ones the base model was pretrained with, so fine-tuning sees the same
split unless told otherwise; evaluation targets the base model trained on are refused (``LeakageError``).
The output folder holds the merged, standalone stock model (``AutoModelForMaskedLM`` / ``...CausalLM``), the
tokenizer, metrics and a model card, and ``adapter/`` holds the LoRA adapter for ``PeftModel.from_pretrained``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from accelerate.utils import DistributedType

from bertrec import repeats, transitions
from bertrec.args import (
    ConfigError,
    DataArguments,
    EvalArguments,
    FinetuneArguments,
    HubArguments,
    parse_args,
    resolved_config,
)
from bertrec.collators import TokenLayout
from bertrec.integrity import mark_incomplete
from bertrec.lora import apply_lora, merge, parameter_counts, save_adapter
from bertrec.losses import ItemLoss
from bertrec.modeling import model_objective
from bertrec.new_items import add_new_items, new_item_features, new_item_ids
from bertrec.recipes.common import (
    check_choices,
    evaluate_baselines,
    evaluate_parts,
    evaluation_options,
    prepare_data,
    print_test_table,
    publish,
    reads_action_prompt,
    save_output,
    start_run,
    training_summary,
    validation_of,
)
from bertrec.recipes.finetune_setup import (
    ADAPTER_DIR,
    check_base_saw_no_targets,
    load_base,
    peak_memory_mb,
    with_candidates,
)
from bertrec.tasks import target_event_prefixes
from bertrec.training import Objective, TrainingArguments, train

logger = logging.getLogger("bertrec")
ARGUMENTS = (FinetuneArguments, DataArguments, TrainingArguments, EvalArguments, HubArguments)
DEFAULTS = {
    "output_dir": "outputs/finetune",
    "num_epochs": 20,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.1,
    "early_stopping_patience": 5,
}
# LoRA's low-rank updates start at zero and need a larger step than full fine-tuning; both chosen on
# validation NDCG@10 over 3e-4..1e-2 in benchmarks/finetune_lora.py
LEARNING_RATES = {"lora": 1e-2, "full": 1e-3, "none": 0.0}


def main(argv: list[str] | None = None) -> dict:
    first = parse_args(ARGUMENTS, argv, DEFAULTS)[0]
    base = load_base(first.base_model)
    defaults = {**DEFAULTS, "learning_rate": LEARNING_RATES.get(first.method, 1e-3), **base.data}
    ft_args, data_args, train_args, eval_args, hub_args = parse_args(ARGUMENTS, argv, defaults)
    config = resolved_config(ft_args, data_args, train_args, eval_args, hub_args)
    # a base trained on cosine logits is fine-tuned on them, its item rows kept at unit norm, unless a re-ranking
    # loss (on dot products) replaces the softmax; saved, so a fine-tune of this fine-tune inherits it in turn
    temperature = None if ft_args.task == "rerank" else base.config.get("logit_temperature")
    config["logit_temperature"] = temperature
    check_choices(
        method=(ft_args.method, ("lora", "full", "none")),
        task=(ft_args.task, ("next_item", "rerank")),
        rerank_loss=(ft_args.rerank_loss, ("listwise", "bpr")),
    )
    accelerator = start_run(train_args, config, project="bertrec-finetune")
    if accelerator.distributed_type == DistributedType.FSDP:  # adapters' evaluation and saving are not shard-aware
        raise ConfigError("fine-tuning does not support FSDP; launch it with multi_gpu_ddp.yaml or one process")
    started = time.perf_counter()

    data = prepare_data(data_args)
    check_base_saw_no_targets(base, data_args, data.split)
    model, tokenizer = base.model, base.tokenizer
    new_ids: list[int] = []
    if ft_args.new_items and (items := new_item_ids(tokenizer, data.split.train, ft_args.new_item_min_count)):
        features = new_item_features(data_args, tokenizer)
        tokenizer, new_ids = add_new_items(model, tokenizer, data.split.train, items, features=features)
    split = with_candidates(data.split, ft_args, tokenizer, seed=train_args.seed)
    objective_name, action = model_objective(model), data_args.target_action
    base_action = action if reads_action_prompt(base.config, objective_name) else None
    untuned = evaluate_parts(
        model, tokenizer, split, "base ", **evaluation_options(eval_args, train_args, accelerator, base_action)
    )
    peft_model = None
    if ft_args.method == "lora":
        peft_model = apply_lora(
            model,
            r=ft_args.lora_r,
            alpha=ft_args.lora_alpha,
            dropout=ft_args.lora_dropout,
            target_modules=ft_args.lora_target_modules,
            head_modules=ft_args.head_modules,
            new_token_ids=new_ids,
        )
        model = peft_model.get_base_model()
    elif ft_args.method == "none":
        model.requires_grad_(False)
    for table in (repeats.bias_of(model), repeats.gate_of(model), transitions.weight_of(model)):
        if table is not None:  # a full fine-tune trains the score terms with the softmax; LoRA keeps them, as it
            # keeps the item embeddings, so the adapter folder on its base is the whole fine-tuned model
            table.requires_grad_(ft_args.method == "full" and ft_args.task != "rerank")
    counts = parameter_counts(model)
    logger.info(
        "trainable parameters: %d of %d (%.2f%%)",
        counts["trainable"],
        counts["total"],
        100 * counts["trainable_fraction"],
    )

    layout = TokenLayout.from_tokenizer(tokenizer)
    if action:  # every training prompt ends at an event of the target action, conditioned on it
        windows = tokenizer.encode_sequences(target_event_prefixes(split.train, action, tokenizer.spec.max_events))
        objective = Objective(objective_name, layout, conditioned=True, last_event_only=True)
    else:
        windows = tokenizer.encode_training_windows(split.train, min_events=2 if objective_name == "next" else 1)
        objective = Objective(objective_name, layout, mask_prob=ft_args.mask_prob)
    rerank = ft_args.task == "rerank"
    loss_module = ItemLoss(
        model,
        item_offset=tokenizer.item_offset,
        num_items=tokenizer.num_items,
        num_uniform_negatives=ft_args.num_negatives if rerank else 0,
        rerank_loss=ft_args.rerank_loss if rerank else None,
        temperature=temperature,
        layout=layout,
    )
    eval_kwargs = evaluation_options(eval_args, train_args, accelerator, action)

    if ft_args.method == "none":  # nothing trains: the base's own scores are the result
        state = {
            "best_step": -1,
            "best_metric": untuned["valid"]["ndcg@10"] if "valid" in untuned else -1.0,
            "epoch": 0,
            "global_step": 0,
            "history": [],
        }
        results = untuned
    else:
        logger.info("%d training prompts for task %s%s", len(windows), ft_args.task, f" ({action})" if action else "")
        validate = validation_of(model, tokenizer, split, **eval_kwargs)
        state = train(accelerator, loss_module, windows, objective, validate, train_args)
        results = evaluate_parts(model, tokenizer, split, **eval_kwargs)
    train_seconds = time.perf_counter() - started
    metrics = {
        **results,
        "baselines": {"no fine-tuning": untuned, **evaluate_baselines(tokenizer, split, action, **eval_kwargs)},
        "finetuning": {
            "base_model": ft_args.base_model,
            "method": ft_args.method,
            "task": ft_args.task,
            "target_action": action,
            "new_items": len(new_ids),
            **counts,
            "peak_memory_mb": peak_memory_mb(accelerator.device),
        },
        "training": training_summary(state, train_seconds, accelerator.num_processes),
        "data": {
            **split.stats,
            "vocab_size": tokenizer.vocab_size,
            "items": tokenizer.num_items,
            "train_prompts": len(windows),
            "layout": tokenizer.spec.layout,
            "objective": objective_name,
        },
    }
    if accelerator.is_main_process:
        out = Path(train_args.output_dir)
        final = accelerator.unwrap_model(loss_module).model
        mark_incomplete(out)  # an earlier run's manifest must not vouch for the files written from here on
        if peft_model is not None:
            save_adapter(peft_model, out / ADAPTER_DIR, ft_args.base_model)
            tokenizer.save(out / ADAPTER_DIR)
            final = merge(peft_model)
        save_output(str(out), model=final, tokenizer=tokenizer, config=config, report=data.report, metrics=metrics)
        publish(out, metrics=metrics, config=config, report=data.report, hub_args=hub_args)
        print(
            f"\ntrainable parameters {counts['trainable']:,} of {counts['total']:,} "
            f"({100 * counts['trainable_fraction']:.2f}%), {train_seconds:.0f} s"
        )
        heading = f"test metrics ({results['test']['users']} users):"
        print_test_table(f"{ft_args.method} ({ft_args.task})", metrics, eval_args.metric_ks, heading)
        print(f"saved to {out}")
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
