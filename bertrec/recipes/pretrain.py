"""Pretrain a masked-event (BERT-style) or next-event (GPT-style) recommender and evaluate it.

accelerate launch recipes/pretrain.py                      # built-in synthetic shop log, BERT-style
accelerate launch recipes/pretrain.py --config recipes/configs/synthetic/pretrain_next.yaml --num_epochs 5
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from accelerate.utils import DistributedType

from bertrec import item_content, repeats, transitions
from bertrec.args import (
    ConfigError,
    DataArguments,
    EvalArguments,
    HubArguments,
    ModelArguments,
    TokenizerArguments,
    parse_args,
    resolved_config,
)
from bertrec.baselines import item_counts
from bertrec.collators import TokenLayout
from bertrec.item_init import init_from_transitions
from bertrec.losses import ItemLoss
from bertrec.modeling import ARCHITECTURES, build_model, objective_for
from bertrec.recipes.common import (
    check_choices,
    evaluate_baselines,
    evaluate_parts,
    evaluation_options,
    make_tokenizer,
    prepare_data,
    print_test_table,
    publish,
    reads_action_prompt,
    save_output,
    start_run,
    training_summary,
    validation_of,
)
from bertrec.recipes.prepared_input import read_prepared
from bertrec.sharding import full_state_dict, gathered_parameters
from bertrec.tokenization import LAYOUTS
from bertrec.training import Objective, TrainingArguments, train

logger = logging.getLogger("bertrec")
ARGUMENTS = (DataArguments, TokenizerArguments, ModelArguments, TrainingArguments, EvalArguments, HubArguments)


def main(argv: list[str] | None = None) -> dict:
    data_args, tok_args, model_args, train_args, eval_args, hub_args = parse_args(ARGUMENTS, argv)
    if model_args.repeat_scores is None:
        # repeat scores rank only the user's own items, which an --exclude_seen ranking removes; there they
        # would only take the repeat targets' signal away from the item model (yoochoose-100k, BENCHMARKS.md)
        model_args.repeat_scores = not eval_args.exclude_seen
    if model_args.loss_excludes_seen is None:
        # a ranking without the user's items should not be trained to push them down: chosen on validation for
        # every id model where it was offered (ml-100k, amazon-beauty, -office, -scientific; BENCHMARKS.md)
        model_args.loss_excludes_seen = eval_args.exclude_seen and not model_args.repeat_scores
    config = resolved_config(data_args, tok_args, model_args, train_args, eval_args, hub_args)
    accelerator = start_run(train_args, config, project="bertrec")
    started = time.perf_counter()

    check_choices(
        model_type=(model_args.model_type, tuple(ARCHITECTURES)),
        layout=(tok_args.layout, tuple(LAYOUTS)),
        loss=(model_args.loss, ("full", "sampled")),
        item_init=(model_args.item_init, ("random", "transitions")),
    )
    if model_args.logit_temperature is not None and accelerator.distributed_type == DistributedType.FSDP:
        # FSDP shards the embedding, and the unit-norm projection after each step reads whole item rows
        raise ConfigError("--logit_temperature does not run under FSDP; use DDP or one process")
    prepared = read_prepared(data_args, tok_args) if data_args.prepared_dir else None
    data = prepared.data if prepared else prepare_data(data_args)
    split = data.split
    tokenizer = prepared.tokenizer if prepared and prepared.tokenizer else make_tokenizer(tok_args, split)
    if data_args.item_features:
        if tok_args.tokenizer_dir:
            raise ConfigError("--item_features builds the attribute vocabulary: drop --tokenizer_dir")
        tokenizer = item_content.tokenizer_with_features(
            tokenizer,
            data_args.item_features,
            data_args.item_feature_columns,
            tok_args.min_attribute_items,
            tok_args.item_tokens,
            data_args.item_text_columns,
            tok_args.semantic_id_levels,
            tok_args.semantic_id_codebook,
            train_args.seed,
            tok_args.item_text_encoder,
            tok_args.item_text_dim,
            tok_args.item_text_vectors,
        )
    elif tok_args.item_tokens != "id" or tok_args.item_text_vectors:
        flag = "--item_text_vectors" if tok_args.item_tokens == "id" else f"--item_tokens {tok_args.item_tokens}"
        raise ConfigError(f"{flag} needs --item_features (the items' text)")
    if tokenizer.spec.item_attributes and (
        model_args.logit_temperature is not None or accelerator.distributed_type == DistributedType.FSDP
    ):
        # both write or shard whole embedding rows, which here are composed from several
        raise ConfigError("item features do not run with --logit_temperature or under FSDP yet")
    objective_name = objective_for(model_args.model_type)
    if prepared and prepared.windows is not None:  # encoded when the folder was prepared, memory-mapped here
        windows = prepared.windows
    else:
        windows = tokenizer.encode_training_windows(split.train, min_events=2 if objective_name == "next" else 1)
    logger.info(
        "vocabulary %d tokens (%d items); %d training windows",
        tokenizer.vocab_size,
        tokenizer.num_items,
        len(windows),
    )

    model = build_model(
        model_type=model_args.model_type,
        vocab_size=tokenizer.vocab_size,
        max_positions=tokenizer.spec.max_events * tokenizer.spec.positions_per_event,
        hidden_size=model_args.hidden_size,
        num_layers=model_args.num_layers,
        num_heads=model_args.num_heads,
        intermediate_size=model_args.intermediate_size,
        dropout=model_args.dropout,
        attention_dropout=model_args.attention_dropout,
        pad_token_id=tokenizer.pad_id,
        attn_implementation=model_args.attn_implementation,
        tie_embeddings=model_args.tie_embeddings,
    )
    layout = TokenLayout.from_tokenizer(tokenizer)
    if model_args.item_init == "transitions":
        init_from_transitions(model, windows, layout, seed=train_args.seed)
    if tokenizer.spec.item_attributes:
        item_content.attach(model, tokenizer, id_dropout=model_args.item_id_dropout)
    elif model_args.item_id_dropout:
        raise ConfigError("--item_id_dropout drops id rows in favour of content: it needs --item_features")
    if model_args.repeat_scores:
        repeats.attach(model, layout, windows, gated=model_args.repeat_gate)
    if model_args.transition_scores:
        transitions.attach(model, layout, windows)
    log_frequency = None
    if model_args.loss == "sampled":
        counts = item_counts(tokenizer, split.train)
        log_frequency = torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32)
    loss_module = ItemLoss(
        model,
        item_offset=tokenizer.item_offset,
        num_items=tokenizer.num_items,
        item_log_frequency=log_frequency,
        num_uniform_negatives=model_args.num_negatives,
        exclude_seen=model_args.loss_excludes_seen,
        temperature=model_args.logit_temperature,
        layout=layout,
    )
    objective = Objective(
        objective_name,
        layout,
        mask_prob=model_args.mask_prob,
        mask_action_prob=model_args.mask_action_prob,
        conditioned=model_args.supervise_conditioned,
    )
    action = data_args.target_action if reads_action_prompt(config, objective_name) else None
    eval_kwargs = evaluation_options(eval_args, train_args, accelerator, action)

    validate = validation_of(model, tokenizer, split, **eval_kwargs)
    state = train(accelerator, loss_module, windows, objective, validate, train_args)
    train_seconds = time.perf_counter() - started

    baselines = evaluate_baselines(tokenizer, split, data_args.target_action, **eval_kwargs)
    with gathered_parameters(loss_module):  # FSDP: full weights for evaluation (else a no-op)
        results = evaluate_parts(model, tokenizer, split, **eval_kwargs)
    metrics = {
        **results,
        "baselines": baselines,
        "training": training_summary(state, train_seconds, accelerator.num_processes),
        "data": {
            **split.stats,
            "vocab_size": tokenizer.vocab_size,
            "items": tokenizer.num_items,
            "train_windows": len(windows),
            "layout": tokenizer.spec.layout,
            "objective": objective_name,
            "item_attributes": item_content.summary(tokenizer),
        },
    }
    weights = full_state_dict(model)  # FSDP: every shard gathered on the main process (else None)
    if accelerator.is_main_process:
        save_output(
            train_args.output_dir,
            model=model,
            tokenizer=tokenizer,
            config=config,
            report=data.report,
            metrics=metrics,
            state_dict=weights,
        )
        publish(train_args.output_dir, metrics=metrics, config=config, report=data.report, hub_args=hub_args)
        if "valid" in results:
            print(f"\nvalidation ndcg@10 {results['valid']['ndcg@10']:.4f}  (best step {state['best_step']})")
        heading = f"test metrics ({results['test']['users']} users, full ranking over {tokenizer.num_items} items):"
        print_test_table(f"{model_args.model_type} ({objective_name})", metrics, eval_args.metric_ks, heading)
        print(f"saved to {train_args.output_dir}")
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()
