"""Item losses at labelled positions: full-softmax cross-entropy, or sampled softmax for large catalogues."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from bertrec import repeats, transitions
from bertrec.metrics import leave_out
from bertrec.modeling import backbone_hidden, head_features, item_logits, model_objective, output_weight_and_bias


def full_softmax_loss(
    model: PreTrainedModel,
    features: torch.Tensor,
    targets: torch.Tensor,
    item_offset: int,
    num_items: int,
    excluded: tuple[torch.Tensor, torch.Tensor] | None = None,
    temperature: float | None = None,
    repeat_scores: repeats.RepeatScores | None = None,
    transition_scores: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cross-entropy over every item for ``features [n, hidden]`` with item-index ``targets [n]``; the items
    ``excluded`` (``seen_items``' (rows, items) pairs, never a row's own target) are left out of their row's softmax.
    ``temperature``: cosine logits (``item_logits``); ``repeat_scores`` and ``transition_scores`` are added to
    the logits (``bertrec.repeats``, ``bertrec.transitions``)."""
    logits = item_logits(model, features, item_offset, num_items, temperature=temperature).float()
    if transition_scores is not None:
        logits = transitions.add_to(logits, transition_scores)
    if repeat_scores is not None and excluded is None:
        return -repeat_scores.target_log_prob(logits, targets).mean()
    if repeat_scores is not None:
        logits = repeat_scores.combine(logits)
    if excluded is not None:
        logits = leave_out(logits, *excluded, in_place=repeat_scores is None)  # a gated mixture's backward reads it
    return F.cross_entropy(logits, targets)


_SEEN_ROWS_PER_CHUNK = 4096  # 4096 positions x a 600-token window of int64 indices: 20 MB


def seen_items(
    input_ids: torch.Tensor,
    labelled: torch.Tensor,
    targets: torch.Tensor,
    item_offset: int,
    num_items: int,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, items)``: for each labelled position (row), the items of its input the model could already see.

    Next event (``causal``): the item tokens at or before the position; masked events: every item token left
    visible in the window. A row's own target is never marked, so a repeat still trains. This is what
    evaluation with ``exclude_seen`` removes from the ranking, so leaving these items out of the training
    softmax stops the loss from pushing down the items most like the user's taste, which the user has
    already chosen and which are never ranked anyway.

    Index pairs, not a ``[rows, num_items]`` mask: a position has seen at most its window's items, so on a
    large catalogue the mask (filled, then copied into the logits) cost more than the softmax it trims.
    A pair may repeat (an item seen twice).
    """
    items = input_ids - item_offset
    items = torch.where((items >= 0) & (items < num_items), items, -1)  # non-items: never marked
    rows, positions = labelled.nonzero(as_tuple=True)
    steps = torch.arange(items.shape[1], device=items.device)
    seen_rows, seen_cols = [], []
    for start in range(0, len(rows), _SEEN_ROWS_PER_CHUNK):  # bounds the [rows, window] index copies
        part = slice(start, start + _SEEN_ROWS_PER_CHUNK)
        history = items[rows[part]]
        if causal:
            history = history.masked_fill(steps[None, :] > positions[part, None], -1)
        history = history.masked_fill(history == targets[part, None], -1)
        row, column = (history >= 0).nonzero(as_tuple=True)
        seen_rows.append(row + start)
        seen_cols.append(history[row, column])
    empty = torch.zeros(0, dtype=torch.long, device=items.device)
    return torch.cat([empty, *seen_rows]), torch.cat([empty, *seen_cols])


def sampled_softmax_loss(
    model: PreTrainedModel,
    features: torch.Tensor,
    targets: torch.Tensor,
    item_offset: int,
    item_log_frequency: torch.Tensor,
    num_uniform: int,
    generator: torch.Generator | None = None,
    excluded: tuple[torch.Tensor, torch.Tensor] | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """Softmax over the batch's targets plus ``num_uniform`` uniform items, with logQ correction.

    Candidates are deduplicated, so an in-batch positive is never also counted as a negative. Each candidate's
    logit is reduced by the log of its expected count in the candidate set (in-batch items arrive with their
    training frequency, uniform ones with 1/num_items), which makes the sampled loss an unbiased stand-in for
    the full softmax in expectation instead of punishing popular items.
    """
    num_items = item_log_frequency.numel()
    uniform = torch.randint(num_items, (num_uniform,), generator=generator).to(targets.device)
    candidates, inverse = torch.unique(torch.cat([targets, uniform]), return_inverse=True)
    labels = inverse[: targets.numel()]
    expected = targets.numel() * item_log_frequency[candidates].exp() + num_uniform / num_items
    logits = item_logits(model, features, item_offset, num_items, items=candidates, temperature=temperature)
    logits = logits.float() - expected.log()
    if excluded is not None:  # the seen items that are candidates, by their candidate column
        rows, items = excluded
        columns = torch.searchsorted(candidates, items).clamp(max=len(candidates) - 1)
        present = candidates[columns] == items
        logits = leave_out(logits, rows[present], columns[present], in_place=True)
    return F.cross_entropy(logits, labels)


def candidate_loss(
    model: PreTrainedModel,
    features: torch.Tensor,
    targets: torch.Tensor,
    item_offset: int,
    num_items: int,
    *,
    num_negatives: int,
    kind: str = "listwise",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Re-ranking losses over each target and ``num_negatives`` uniformly sampled items of its own.

    ``listwise``: softmax cross-entropy over the candidate list (the target first). ``bpr``: the mean pairwise
    ``-log sigmoid(s_target - s_negative)``. A negative that happens to equal its target is left out.
    """
    if kind not in ("listwise", "bpr"):
        raise ValueError(f"rerank loss {kind!r} is not one of ['listwise', 'bpr']")
    negatives = torch.randint(num_items, (len(targets), num_negatives), generator=generator).to(targets.device)
    candidates = torch.cat([targets[:, None], negatives], dim=1)
    weight, bias = output_weight_and_bias(model)
    rows = candidates + item_offset
    logits = torch.einsum("nh,nch->nc", features, weight[rows])
    if bias is not None:
        logits = logits + bias[rows]
    logits = logits.float()
    collision = torch.cat([torch.zeros_like(targets[:, None], dtype=torch.bool), negatives == targets[:, None]], 1)
    if kind == "listwise":
        return F.cross_entropy(logits.masked_fill(collision, float("-inf")), torch.zeros_like(targets))
    pairwise = F.softplus(logits[:, 1:] - logits[:, :1])
    keep = ~collision[:, 1:]
    return (pairwise * keep).sum() / keep.sum().clamp(min=1)


class ItemLoss(torch.nn.Module):
    """Wraps a stock model so one ``forward`` returns the item loss at labelled positions.

    Distributed wrappers (DDP, FSDP) synchronise gradients only through the wrapped module's ``forward``; the
    loss needs the backbone and head called separately, so the whole computation lives in this forward.
    """

    @property
    def _no_split_modules(self) -> list[str]:
        """The wrapped model's transformer block classes, which FSDP's transformer-based auto wrap (accelerate's
        ``fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP``) reads from the module it is given: this one.

        A class holding the item embedding (BERT lists ``BertEmbeddings``) is left out: the same matrix is the
        output layer, which this module uses after the backbone's forward, when a group of its own would
        already be resharded. It stays in the root group, gathered for the whole forward.
        """
        embedding = self.model.get_input_embeddings().weight
        holders = {type(m).__name__ for m in self.model.modules() if any(p is embedding for p in m.parameters())}
        return [name for name in getattr(self.model, "_no_split_modules", None) or [] if name not in holders]

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        item_offset: int,
        num_items: int,
        item_log_frequency: torch.Tensor | None = None,
        num_uniform_negatives: int = 0,
        rerank_loss: str | None = None,
        exclude_seen: bool = False,
        temperature: float | None = None,
        layout=None,
    ):
        """``exclude_seen``: leave each position's already-seen items (``seen_items``: what a next-event model has
        read up to the position, what a masked one sees in the window) out of the softmax, full or sampled.

        ``temperature``: train on cosine logits divided by it (``item_logits``). Bounded logits with a small
        temperature weigh hard negatives more than raw dot products, whose scale the model can inflate instead of
        ranking better. The item rows are set to unit norm here and after every optimizer step
        (``after_optimizer_step``), so the saved stock model, which ranks by raw dot products, ranks as trained.

        ``layout`` (a ``TokenLayout``) is needed for stacked ids and for repeat scores (``bertrec.repeats``):
        when the model carries a repeat table, its scores join the full softmax and train with it (the
        re-ranking losses leave it out: fine-tuning freezes it for them).
        """
        super().__init__()
        if (exclude_seen or temperature is not None) and rerank_loss is not None:
            raise ValueError("exclude_seen and temperature apply to the softmax losses, not to the rerank losses")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.rerank_loss, self.exclude_seen, self.temperature = rerank_loss, exclude_seen, temperature
        self.model, self.layout = model, layout
        if item_log_frequency is not None:
            for present, flag in ((repeats.bias_of(model), "repeat"), (transitions.weight_of(model), "transition")):
                if present is not None:
                    raise ValueError(
                        f"{flag} scores train with the full softmax only, not with --loss sampled: pass "
                        f"--{flag}_scores false"
                    )
        self.item_offset, self.num_items = item_offset, num_items
        self.num_uniform_negatives = num_uniform_negatives
        sampled = item_log_frequency is not None
        self.register_buffer("item_log_frequency", item_log_frequency if sampled else torch.zeros(0), persistent=False)
        self.after_optimizer_step()

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Under ``temperature``: put the item rows of the tied embedding back on the unit sphere, and the new
        items' rows that a peft trainable-tokens adapter holds apart from it (fine-tuning with new items)."""
        if self.temperature is None:
            return
        output = self.model.get_output_embeddings()
        adapter = getattr(output, "token_adapter", None)  # peft's trainable tokens: new items' rows live apart
        layer = output if adapter is None else adapter.base_layer
        _to_unit_norm(layer.weight[self.item_offset : self.item_offset + self.num_items])
        for rows in [] if adapter is None else adapter.trainable_tokens_delta.values():
            _to_unit_norm(rows)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        hidden = backbone_hidden(self.model, input_ids, attention_mask)
        labelled = labels != -100
        features = head_features(self.model, hidden[labelled])
        targets = labels[labelled]
        excluded = None
        causal = model_objective(self.model) == "next"
        items = input_ids if self.layout is None else self.layout.event_items(input_ids)
        if self.exclude_seen:
            excluded = seen_items(items, labelled, targets, self.item_offset, self.num_items, causal)
        bias = repeats.bias_of(self.model)
        repeat_scores = None
        rows, positions = labelled.nonzero(as_tuple=True)
        if bias is not None:
            repeat_scores = repeats.repeat_term(
                bias,
                self.layout,
                input_ids,
                rows,
                positions,
                causal=causal,
                num_items=self.num_items,
                gate=repeats.gate_of(self.model),
            )
        transition_scores = transitions.model_term(
            self.model, self.layout, input_ids, rows, positions, causal=causal, targets=targets
        )
        if self.rerank_loss is not None:
            return candidate_loss(
                self.model,
                features,
                targets,
                self.item_offset,
                self.num_items,
                num_negatives=self.num_uniform_negatives,
                kind=self.rerank_loss,
                generator=generator,
            )
        if self.item_log_frequency.numel():
            return sampled_softmax_loss(
                self.model,
                features,
                targets,
                self.item_offset,
                self.item_log_frequency,
                self.num_uniform_negatives,
                generator,
                excluded,
                self.temperature,
            )
        return full_softmax_loss(
            self.model,
            features,
            targets,
            self.item_offset,
            self.num_items,
            excluded,
            self.temperature,
            repeat_scores,
            transition_scores,
        )


def _to_unit_norm(rows: torch.Tensor) -> None:
    rows.div_(rows.norm(dim=1, keepdim=True).clamp(min=1e-12))
