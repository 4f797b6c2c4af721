"""Build stock ``transformers`` models and score item tokens with their own output head.

Nothing is registered with the Auto classes and nothing needs remote code: a bertrec model *is* a
``BertForMaskedLM`` or a ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` / ``GPTNeoXForCausalLM`` /
``BertGenerationDecoder``. Scoring calls the
backbone and the head separately so logits are computed only at the positions that need them (``BertForMaskedLM`` has no
``logits_to_keep``), and only the item rows of the output matrix are used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, PreTrainedModel

from bertrec import repeats, transitions
from bertrec.integrity import verify_manifest

BERT_SIZES = {
    "intermediate_size": "intermediate_size",
    "dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
}
# objective, and how each architecture names the generic sizes that its config does not map itself
ARCHITECTURES: dict[str, tuple[str, dict[str, str]]] = {
    "bert": ("masked", BERT_SIZES),
    # BERT's block as a causal decoder with a plain linear output layer (BertGenerationDecoder): each sub-layer's
    # residual sum is layer-normed, as in SASRec's block (GPT-2 and Llama normalise only each sub-layer's input)
    "bert-generation": ("next", BERT_SIZES),
    "gpt2": (
        "next",
        {
            "intermediate_size": "n_inner",
            "dropout": "resid_pdrop",
            "attention_dropout": "attn_pdrop",
            "embedding_dropout": "embd_pdrop",
        },
    ),
    "llama": ("next", {"intermediate_size": "intermediate_size", "attention_dropout": "attention_dropout"}),
    # rotary (relative) positions like Llama, and dropout on the residual stream like GPT-2
    "gpt_neox": (
        "next",
        {
            "intermediate_size": "intermediate_size",
            "dropout": "hidden_dropout",
            "attention_dropout": "attention_dropout",
        },
    ),
}
# settings fixed per architecture: GPT-NeoX rotates every head dimension and uses the sequential residual of
# GPT-2 and Llama (its defaults, 25% rotary and parallel residuals, come from 6B+ language models)
FIXED_SETTINGS: dict[str, dict] = {
    "gpt_neox": {"rotary_pct": 1.0, "use_parallel_residual": False},
    "bert-generation": {"is_decoder": True, "hidden_act": "relu", "layer_norm_eps": 1e-8},  # causal; SASRec's
}
OBJECTIVES = ("masked", "next")


def objective_for(model_type: str) -> str:
    if model_type not in ARCHITECTURES:
        raise ValueError(f"model_type {model_type!r} is not supported; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[model_type][0]


def build_model(
    *,
    model_type: str,
    vocab_size: int,
    max_positions: int,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int | None = None,
    dropout: float = 0.1,
    attention_dropout: float = 0.0,
    pad_token_id: int = 0,
    attn_implementation: str = "sdpa",
    tie_embeddings: bool = True,
) -> PreTrainedModel:
    """A freshly initialised stock model; masked-LM architectures train masked events, causal ones next events.

    ``tie_embeddings=False`` gives the output layer rows of its own: an item's score is then a learned
    bilinear form of the input (as factorised transition models have), not a similarity to the item's input
    embedding, which a small model must otherwise bend through its feed-forward layers."""
    objective = objective_for(model_type)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
    names = ARCHITECTURES[model_type][1]
    sizes = {
        "intermediate_size": intermediate_size or 4 * hidden_size,
        "dropout": dropout,
        "attention_dropout": attention_dropout,
        "embedding_dropout": dropout,
    }
    extra = {names[key]: value for key, value in sizes.items() if key in names}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=pad_token_id,
        bos_token_id=None,
        eos_token_id=None,
        tie_word_embeddings=tie_embeddings,
        **extra,
        **FIXED_SETTINGS.get(model_type, {}),
    )
    for key, value in FIXED_SETTINGS.get(model_type, {}).items():
        # also under the attribute's own name: transformers 5 folds rotary_pct into rope_parameters and would not
        # write it, and transformers 4 would then read its 25% default and score the saved model differently
        setattr(config, key, value)
    if model_type == "llama":
        config.num_key_value_heads = num_heads
        config.head_dim = hidden_size // num_heads
    auto = AutoModelForMaskedLM if objective == "masked" else AutoModelForCausalLM
    return auto.from_config(config, attn_implementation=attn_implementation)


def load_model(model_dir: str) -> PreTrainedModel:
    """The stock model class for a saved folder's architecture (masked or causal LM), after checking the folder
    against its manifest, so a damaged or half-written folder is refused by name instead of loaded."""
    verify_manifest(model_dir, what="model folder")
    config = AutoConfig.from_pretrained(model_dir)
    auto = AutoModelForMaskedLM if objective_for(config.model_type) == "masked" else AutoModelForCausalLM
    model = auto.from_pretrained(model_dir)
    repeats.load_from_config(model)
    transitions.load(model, model_dir)
    return model


def model_objective(model: PreTrainedModel) -> str:
    return objective_for(model.config.model_type)


def backbone_hidden(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states ``[batch, seq, hidden]`` from the backbone, without the vocabulary projection.

    Stacked ids ``[batch, events, fields]`` (one position per event) enter as the sum of their fields' token
    embeddings, through the stock ``inputs_embeds`` argument."""
    if input_ids.dim() == 3:
        embeds = model.get_input_embeddings()(input_ids).sum(dim=2)
        return model.base_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def head_features(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    """What the output layer multiplies: BERT's prediction transform, or the hidden state for causal models."""
    if model_objective(model) == "masked":
        return model.cls.predictions.transform(hidden)
    return hidden


def item_logits(
    model: PreTrainedModel,
    features: torch.Tensor,
    item_offset: int,
    num_items: int,
    items: torch.Tensor | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """Logits of item tokens from head features: all items, or only the item indices in ``items``.

    The output layer's own weight and bias rows for the item tokens, so the scores equal the stock model's
    logits at the item token ids (to float rounding); non-item rows are never computed. With ``temperature``:
    the cosine similarity of features and item rows divided by it (the bias unused), as a model trained with
    ``ItemLoss(temperature=...)`` is trained; its item rows are kept at unit norm, so for each input the stock
    logits rank items exactly as these do.
    """
    weight, bias = output_weight_and_bias(model)
    rows = slice(item_offset, item_offset + num_items) if items is None else items + item_offset
    if temperature is not None:
        return F.linear(F.normalize(features, dim=-1), F.normalize(weight[rows], dim=-1)) / temperature
    return F.linear(features, weight[rows], None if bias is None else bias[rows])


def output_weight_and_bias(model: PreTrainedModel) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output layer's effective weight and bias, for scoring a subset of rows.

    Under peft's trainable tokens (new items) the layer is wrapped: its ``weight`` lacks the trained rows (the
    wrapper's merged weight has them), and the wrapper's forward drops BERT's decoder bias (peft 0.21), which
    the merged model has; reading both here keeps training, evaluation and the merged model consistent.
    """
    output = model.get_output_embeddings()
    adapter = getattr(output, "token_adapter", None)
    if adapter is not None:
        return adapter.get_merged_weights(adapter.active_adapters), getattr(adapter.base_layer, "bias", None)
    return output.weight, getattr(output, "bias", None)
