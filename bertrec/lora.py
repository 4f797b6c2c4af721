"""LoRA adapters with a trainable ranking head, through ``peft``, and the two artifacts they produce.

What trains, per architecture (defaults; every list is overridable):

* LoRA on the attention projections of every layer;
* the ranking head in full (peft ``modules_to_save``): BERT's prediction transform (dense + LayerNorm), the
  final norm of GPT-2 / Llama, which feed the item scores;
* rows of new item tokens only (peft ``trainable_token_indices``), when a fine-tuning period adds items: in the
  input embedding and, for a model whose output rows are its own (``--tie_embeddings false``), the output layer.

The item embedding matrix, which is also the output layer, stays frozen, so the adapter stays a small
fraction of the model. Two traps are avoided on purpose: ``modules_to_save=["cls"]`` on BERT would copy and
untie the output layer, and the merged model would then reload with a missing decoder bias and silently
different scores; and the head is a stock submodule, so the merged model is again a stock model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from bertrec.item_content import distinct_item_layers


@dataclass(frozen=True)
class LoraDefaults:
    target_modules: tuple[str, ...]
    head_modules: tuple[str, ...]
    embedding_module: str


LORA_DEFAULTS = {
    "bert": LoraDefaults(
        ("query", "key", "value", "attention.output.dense"), ("cls.predictions.transform",), "word_embeddings"
    ),
    # post-norm blocks have no final norm: every layer norm trains in full (a few hundred parameters each)
    "bert-generation": LoraDefaults(
        ("query", "key", "value", "attention.output.dense"), ("LayerNorm",), "word_embeddings"
    ),
    "gpt2": LoraDefaults(("c_attn", "attn.c_proj"), ("ln_f",), "wte"),
    "llama": LoraDefaults(("q_proj", "k_proj", "v_proj", "o_proj"), ("model.norm",), "embed_tokens"),
    "gpt_neox": LoraDefaults(("query_key_value", "attention.dense"), ("final_layer_norm",), "embed_in"),
}


def lora_defaults(model_type: str) -> LoraDefaults:
    if model_type not in LORA_DEFAULTS:
        raise ValueError(
            f"no LoRA defaults for model_type {model_type!r}; pass --lora_target_modules and --head_modules "
            f"explicitly, or use one of {sorted(LORA_DEFAULTS)}"
        )
    return LORA_DEFAULTS[model_type]


def apply_lora(
    model: PreTrainedModel,
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
    head_modules: Sequence[str] | None = None,
    new_token_ids: Sequence[int] = (),
) -> PeftModel:
    """Wrap ``model`` with LoRA adapters; the head trains in full and only ``new_token_ids`` rows of the
    token embeddings (and of an untied output layer) train. Names that match nothing are an error, not a
    silently frozen model."""
    if not (target_modules and head_modules):
        defaults = lora_defaults(model.config.model_type)
        target_modules = target_modules or defaults.target_modules
        head_modules = head_modules or defaults.head_modules
    names = [name for name, _ in model.named_modules()]
    for head in head_modules:
        if not any(name == head or name.endswith("." + head) for name in names):
            raise ValueError(
                f"head module {head!r} not found in the {model.config.model_type} model; check --head_modules"
            )
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        modules_to_save=list(head_modules),
        trainable_token_indices=_new_token_rows(model, new_token_ids) or None,
    )
    return get_peft_model(model, config)


def _new_token_rows(model: PreTrainedModel, new_token_ids: Sequence[int]) -> dict[str, list[int]]:
    """peft's ``trainable_token_indices``: the new rows of the input embedding and, when the output layer is not
    tied to it (``--tie_embeddings false``), of the output layer too, whose new rows would otherwise never train."""
    if not len(new_token_ids):
        return {}
    names = {module: name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    return {names[layer]: list(new_token_ids) for layer in distinct_item_layers(model)}


def parameter_counts(model: torch.nn.Module) -> dict[str, float]:
    """Trainable and total parameters, each tied tensor counted once (as peft and the Hub count them)."""
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return {"trainable": trainable, "total": total, "trainable_fraction": trainable / max(total, 1)}


def save_adapter(peft_model: PeftModel, folder: str | Path, base_model: str) -> None:
    """The adapter alone (loads with ``PeftModel.from_pretrained(base, folder)``), pointing at its base."""
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = base_model
    peft_model.save_pretrained(str(folder))


def merge(peft_model: PeftModel) -> PreTrainedModel:
    """The standalone stock model: LoRA folded into the weights, the trained head and token rows in place."""
    merged = peft_model.merge_and_unload()
    merged.tie_weights()
    return merged
