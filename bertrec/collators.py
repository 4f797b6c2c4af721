"""Batches for the two objectives.

Token ``t`` of an encoded sequence belongs to field ``t % tokens_per_event`` of its event (sequences always
start on an event boundary), and the item is the last field of every layout. Labels are item indices
(``-100`` elsewhere) placed at the position whose hidden state must predict the item:

* masked events: the item's own position, whose input is ``[MASK]``;
* next event: the previous event's item, in every layout, which has seen nothing of the event; with a time
  token, also the event's time token, which has not seen its action; and, when the layout has actions, also
  the action position itself (optional), which trains the action-conditioned prompt (``... <t_now> <a:buy>``).
  The previous item's label is where a model first learns to carry an item's identity forward, which the time
  and action positions then use: without it (before 2026-11-29, time layouts had only the time-token label),
  next-purchase NDCG@10 on the synthetic log (rotary block, 8 epochs) was 0.22 instead of 0.46.

Both objectives check their own output (``assert_targets_hidden``, ``assert_labels_causal``): a label that
could see its target raises instead of training a model on leaked answers.

Randomness comes from an explicit ``torch.Generator`` so a resumed run masks exactly like an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

IGNORE = -100


@dataclass(frozen=True)
class TokenLayout:
    """The id ranges and field order the collators need, detached from the tokenizer object."""

    tokens_per_event: int
    has_action: bool
    has_time: bool
    item_offset: int
    num_items: int
    pad_id: int
    mask_id: int
    # stacked layouts (one position per event, ``bertrec.stacked``): field order and the id ranges to shift
    stacked: bool = False
    fields: tuple[str, ...] = ()
    action_offset: int = 0
    num_actions: int = 0
    time_offset: int = 0  # id of <t:0>
    num_time_buckets: int = 0
    next_action_offset: int = 0
    next_time_offset: int = 0
    items_from_content: int = 0  # the last items, added after training from content alone
    added_items_weighing: tuple[float, ...] = ()  # (slope, intercept) of ``item_content.pooled_scores``

    @classmethod
    def from_tokenizer(cls, tokenizer) -> TokenLayout:
        spec = tokenizer.spec
        fields = spec.fields
        return cls(
            len(fields),
            "action" in fields,
            "time" in fields,
            tokenizer.item_offset,
            tokenizer.num_items,
            tokenizer.pad_id,
            tokenizer.mask_id,
            stacked=spec.stacked,
            fields=tuple(fields),
            action_offset=tokenizer.action_offset,
            num_actions=len(spec.actions),
            time_offset=tokenizer.first_bucket_id + 1,
            num_time_buckets=len(spec.time_boundaries) + 1,
            next_action_offset=tokenizer.next_action_offset,
            next_time_offset=tokenizer.next_time_offset,
            items_from_content=spec.items_from_content,
            added_items_weighing=tuple(spec.added_items_weighing),
        )

    @property
    def positions_per_event(self) -> int:
        return 1 if self.stacked else self.tokens_per_event

    @property
    def item_field(self) -> int:
        return self.fields.index("item") if self.stacked else 0

    def event_items(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, positions]`` ids of each position's item field (stacked), or the ids themselves."""
        return input_ids[..., self.item_field] if input_ids.dim() == 3 else input_ids

    def item_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Item index of item tokens, ``IGNORE`` for anything else (padding, unknown item)."""
        index = token_ids - self.item_offset
        return torch.where((index >= 0) & (index < self.num_items), index, torch.full_like(index, IGNORE))


def pad_sequences(sequences: Sequence[np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad token id arrays to the longest in the batch (right padding keeps stock position ids).

    Stacked layouts' ``[events, fields]`` arrays give ``input_ids [batch, events, fields]``."""
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length, *np.shape(sequences[0])[1:]), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        input_ids[row, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.long)
        attention_mask[row, : len(tokens)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def next_event_labels(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, layout: TokenLayout, conditioned: bool = False
) -> torch.Tensor:
    """Labels for next-event training: every event after the first is supervised (see module docstring);
    ``conditioned`` adds the action-conditioned position, which doubles the output-layer work per step."""
    per_event = layout.tokens_per_event
    labels = torch.full_like(input_ids, IGNORE)
    item_positions = torch.arange(2 * per_event - 1, input_ids.shape[1], per_event, device=input_ids.device)
    targets = layout.item_index(input_ids[:, item_positions])
    targets = torch.where(attention_mask[:, item_positions].bool(), targets, torch.full_like(targets, IGNORE))
    labels[:, item_positions - per_event] = targets  # the previous event's item, in every layout
    if layout.has_time:  # the event's own time token (an event's first), which has not seen its action
        labels[:, item_positions - (per_event - 1)] = targets
    if conditioned and layout.has_action:
        labels[:, item_positions - 1] = targets
    assert_labels_causal(input_ids, labels, layout)
    return labels


def assert_labels_causal(input_ids: torch.Tensor, labels: torch.Tensor, layout: TokenLayout) -> None:
    """Leakage guard for causal models: each label must be the first item token *strictly after* its position.

    A causal position sees its own input and everything before it, so a label on the item's own position (or
    any later one) would let the model read the answer. Checked by position, not by item id, because a user may
    legitimately repeat the item they just saw.
    """
    rows, positions = (labels != IGNORE).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return
    per_event = layout.tokens_per_event
    source = positions + (per_event - 1 - positions % per_event)  # the item slot of the position's own event
    source = torch.where(source == positions, source + per_event, source)  # an item position: the next event's
    inside = source < input_ids.shape[1]
    shown = torch.full_like(source, -1)
    shown[inside] = layout.item_index(input_ids[rows[inside], source[inside]])
    if bool((shown != labels[rows, positions]).any()):
        raise AssertionError(
            "leakage: a next-event label is not the first item after its position, so a causal model could see "
            "its target (labels must sit before the item they predict)"
        )


def mask_events(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layout: TokenLayout,
    *,
    mask_prob: float,
    mask_action_prob: float,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-event corruption: returns ``(masked_input_ids, labels)``; ``noise [batch, events, 2]`` holds the
    uniform draws (``window_noise``).

    Each real event is chosen with ``mask_prob`` (at least one per sequence); its item becomes ``[MASK]`` and is
    the label, and its action is masked too with ``mask_action_prob`` so the model also learns to predict an
    item whose action is unknown, which is the unconditioned prompt at inference. Time tokens stay visible:
    the gap to the predicted event is known at prediction time.
    """
    per_event = layout.tokens_per_event
    item_positions = torch.arange(per_event - 1, input_ids.shape[1], per_event)
    real = attention_mask[:, item_positions].bool()
    chosen = choose_events(real, mask_prob, noise[..., 0])
    targets = layout.item_index(input_ids[:, item_positions])
    masked_ids = input_ids.clone()
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, item_positions] = torch.where(chosen, targets, torch.full_like(targets, IGNORE))
    masked_ids[:, item_positions] = torch.where(chosen, layout.mask_id, input_ids[:, item_positions])
    if layout.has_action:
        action_positions = item_positions - 1
        hide_action = chosen & (noise[..., 1] < mask_action_prob)
        masked_ids[:, action_positions] = torch.where(hide_action, layout.mask_id, input_ids[:, action_positions])
    assert_targets_hidden(masked_ids, labels, layout)
    return masked_ids, labels


def choose_events(real: torch.Tensor, mask_prob: float, uniform: torch.Tensor) -> torch.Tensor:
    """Events to mask: each real event (``real [batch, events]``) whose draw in ``uniform`` is below
    ``mask_prob``, and at least one per sequence: where none was chosen, the real event with the lowest draw
    (uniform over the row's real events, as every draw is)."""
    chosen = (uniform < mask_prob) & real
    none = ~chosen.any(dim=1) & real.any(dim=1)
    if none.any():
        pick = torch.where(real, uniform, torch.full_like(uniform, 2.0)).argmin(dim=1)
        chosen[none, pick[none]] = True
    return chosen


def window_noise(seeds: Sequence[int], events: Sequence[int], width: int) -> torch.Tensor:
    """Uniform draws ``[windows, width, 2]`` for a batch's random choices (which events are masked; whose
    action, or whose next action, is hidden): each window's ``events`` rows from its own seed, padding at 1.0
    (never chosen).

    A window's draws depend on its seed (the run's seed, the epoch and the window) alone, not on the batch it
    falls in, the batch's padding or how many processes split it: one process and two train on the same
    inputs, and a change of batch size or batching order leaves every window's masks as they were.
    """
    noise = torch.ones(len(seeds), width, 2)
    for row, (seed, count) in enumerate(zip(seeds, events, strict=True)):
        noise[row, :count] = torch.rand(count, 2, generator=torch.Generator().manual_seed(seed))
    return noise


def assert_targets_hidden(masked_ids: torch.Tensor, labels: torch.Tensor, layout: TokenLayout) -> None:
    """Leakage guard: a masked-event label must never sit on a position whose input shows the target."""
    labelled = labels != IGNORE
    if bool((masked_ids[labelled] != layout.mask_id).any()):
        raise AssertionError("leakage: a masked-event target is visible in the input at its own position")


def last_event_labels(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, layout: TokenLayout, *, objective: str, conditioned: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels that supervise only each sequence's last event: the fine-tuning prompt.

    Each row is a history followed by its target event, so the labelled position sees exactly what
    ``evaluation.encode_prompts`` builds at inference: the current-time bucket, the target's action when
    ``conditioned`` (e.g. ``<a:purchase>``, "what will they buy next"), and for masked models ``[MASK]`` in the
    item slot (and in the action slot when not conditioned). Causal models are labelled at the position
    before the item (the action position when conditioned), which cannot see the item itself.
    """
    per_event = layout.tokens_per_event
    rows = torch.arange(len(input_ids), device=input_ids.device)
    item_position = attention_mask.sum(dim=1) - 1
    targets = layout.item_index(input_ids[rows, item_position])
    show_action = conditioned and layout.has_action
    labels = torch.full_like(input_ids, IGNORE)
    if objective == "masked":
        masked_ids = input_ids.clone()
        masked_ids[rows, item_position] = layout.mask_id
        if layout.has_action and not show_action:
            masked_ids[rows, item_position - 1] = layout.mask_id
        labels[rows, item_position] = targets
        assert_targets_hidden(masked_ids, labels, layout)
        return masked_ids, labels
    offset = 1 if show_action else (per_event - 1 if layout.has_time else per_event)
    labelled = item_position - offset
    valid = labelled >= 0
    labels[rows[valid], labelled[valid]] = targets[valid]
    assert_labels_causal(input_ids, labels, layout)
    return input_ids, labels
