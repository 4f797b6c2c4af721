"""Batches, labels and prompts for stacked layouts (``time+action+item``): one position per event.

An event's tokens share one position and the model adds their embeddings (``inputs_embeds``), so ids are
``[batch, events, fields]`` instead of ``[batch, tokens]``. Two things follow:

* the prediction is read at the event itself: a causal model's position ``i`` predicts event ``i + 1``, and a
  masked model's ``[MASK]`` sits in the item field of the event it predicts, beside that event's time (and
  action, when the question names it);
* a causal position also needs what is known of the event it predicts (the gap to it, and the action when the
  question names one: "what will they *buy* next"). Those are added at the position as ``<next:t:k>`` and
  ``<next:a:X>`` tokens, shifted back from the next event; the action is hidden (``[MASK]``) at random in
  pretraining so that one model answers both the open and the conditioned question.

Nothing here can leak: a causal position's inputs are its own event and the next event's gap and action, never
its item (``assert_stacked_labels``); a masked position's item field is ``[MASK]``.
"""

from __future__ import annotations

import numpy as np
import torch

from bertrec.collators import IGNORE, assert_targets_hidden, choose_events


def as_next_time(layout, time_ids: torch.Tensor) -> torch.Tensor:
    """``<t:k>`` ids -> ``<next:t:k>`` ids (``<t:start>`` and non-time ids -> ``[MASK]``)."""
    bucket = time_ids - layout.time_offset
    valid = (bucket >= 0) & (bucket < layout.num_time_buckets)
    return torch.where(valid, layout.next_time_offset + bucket, torch.full_like(time_ids, layout.mask_id))


def as_next_action(layout, action_ids: torch.Tensor) -> torch.Tensor:
    """``<a:X>`` ids -> ``<next:a:X>`` ids (``[MASK]``, unknown actions -> ``[MASK]``)."""
    index = action_ids - layout.action_offset
    valid = (index >= 0) & (index < layout.num_actions)
    return torch.where(valid, layout.next_action_offset + index, torch.full_like(action_ids, layout.mask_id))


def with_next_fields(
    ids: torch.Tensor, layout, hide_action: torch.Tensor | None = None, last: torch.Tensor | None = None
) -> torch.Tensor:
    """Append the next event's gap and action to every position of ``ids [batch, events, fields]``.

    ``hide_action [batch, events]`` replaces chosen next actions by ``[MASK]``. ``last [batch, 2]`` gives the
    (next-time, next-action) ids of each row's last real position (a prompt: the event to predict is not in
    ``ids``); without it the last real position gets padding (no event follows it, and it has no label).
    """
    columns = [ids]
    shifted = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], layout.pad_id)], dim=1)
    real_next = shifted[..., layout.item_field] != layout.pad_id
    for name, convert, column in (("time", as_next_time, 0), ("action", as_next_action, 1)):
        if name not in layout.fields:
            continue
        values = convert(layout, shifted[..., layout.fields.index(name)])
        if name == "action" and hide_action is not None:
            values = torch.where(hide_action, torch.full_like(values, layout.mask_id), values)
        values = torch.where(real_next, values, torch.full_like(values, layout.pad_id))
        if last is not None:
            lengths = (ids[..., layout.item_field] != layout.pad_id).sum(dim=1)
            rows = torch.arange(len(ids), device=ids.device)
            values[rows, lengths - 1] = last[:, column]
        columns.append(values[..., None])
    return torch.cat(columns, dim=2)


def next_labels(ids: torch.Tensor, attention_mask: torch.Tensor, layout) -> torch.Tensor:
    """Position ``i`` is labelled with event ``i + 1``'s item (``-100`` after the last event)."""
    items = layout.item_index(ids[..., layout.item_field])
    labels = torch.full_like(items, IGNORE)
    labels[:, :-1] = torch.where(attention_mask[:, 1:].bool(), items[:, 1:], IGNORE)
    return labels


def assert_stacked_labels(ids: torch.Tensor, labels: torch.Tensor, layout) -> None:
    """Leakage guard for causal stacked batches: a label is the *next* position's item, never its own."""
    rows, positions = (labels != IGNORE).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return
    following = positions + 1
    inside = following < ids.shape[1]
    shown = torch.full_like(positions, -1)
    shown[inside] = layout.item_index(ids[rows[inside], following[inside], layout.item_field])
    if bool((shown != labels[rows, positions]).any()):
        raise AssertionError("leakage: a causal label is not the next event's item, so the model could see it")


def next_event_batch(
    ids: torch.Tensor, attention_mask: torch.Tensor, layout, *, hide_action_prob: float, noise: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal pretraining: every event after the first is predicted from the one before it; ``noise [batch,
    events, 2]`` (``collators.window_noise``) decides where the next event's action is hidden (None: a layout
    without actions, nothing to hide)."""
    labels = next_labels(ids, attention_mask, layout)
    hide = None if noise is None else noise[..., 1] < hide_action_prob
    assert_stacked_labels(ids, labels, layout)
    return with_next_fields(ids, layout, hide_action=hide), labels


def masked_event_batch(
    ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layout,
    *,
    mask_prob: float,
    mask_action_prob: float,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked events: chosen events' items become ``[MASK]`` (their actions too, with ``mask_action_prob``);
    their times stay, as the gap to the predicted event is known when it is asked for."""
    real = attention_mask.bool()
    chosen = choose_events(real, mask_prob, noise[..., 0])
    hide_action = chosen & (noise[..., 1] < mask_action_prob)
    return _mask(ids, layout, chosen, hide_action)


def _mask(ids: torch.Tensor, layout, chosen: torch.Tensor, hide_action: torch.Tensor):
    items = layout.item_index(ids[..., layout.item_field])
    labels = torch.where(chosen, items, torch.full_like(items, IGNORE))
    masked = ids.clone()
    masked[..., layout.item_field] = torch.where(chosen, layout.mask_id, ids[..., layout.item_field])
    if layout.has_action:
        column = layout.fields.index("action")
        masked[..., column] = torch.where(hide_action, layout.mask_id, ids[..., column])
    assert_targets_hidden(masked[..., layout.item_field], labels, layout)
    return masked, labels


def last_event_batch(
    ids: torch.Tensor, attention_mask: torch.Tensor, layout, *, objective: str, conditioned: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fine-tuning rows (a history followed by its target event): only the target is labelled, from exactly
    the prompt ``encode_stacked_prompts`` builds at inference."""
    rows = torch.arange(len(ids), device=ids.device)
    last = attention_mask.sum(dim=1) - 1
    show_action = conditioned and layout.has_action
    if objective == "masked":
        chosen = torch.zeros(ids.shape[:2], dtype=torch.bool)
        chosen[rows, last] = True
        return _mask(ids, layout, chosen, chosen & (not show_action))
    items = layout.item_index(ids[rows, last, layout.item_field])
    labels = torch.full(ids.shape[:2], IGNORE, dtype=torch.long)
    valid = last >= 1
    labels[rows[valid], last[valid] - 1] = items[valid]
    hide = torch.zeros(ids.shape[:2], dtype=torch.bool)
    if not show_action:
        hide[rows, (last - 1).clamp(min=0)] = True
    assert_stacked_labels(ids, labels, layout)
    return with_next_fields(ids, layout, hide_action=hide), labels


def stacked_prompts(
    history: list[np.ndarray], layout, objective: str, time_ids: np.ndarray | None, action_id: int | None
) -> list[np.ndarray]:
    """Prompts from each history (``[events, fields]``): masked models get one more event, ``[MASK]`` in its
    item (and action, unless asked) field beside its time; causal ones get the next-event fields, the last
    position's being the asked event's gap and action (``[MASK]`` when not asked)."""
    n = len(history)
    time_ids = np.full(n, layout.mask_id) if time_ids is None else time_ids
    action = layout.mask_id if action_id is None else action_id
    if objective == "masked":
        slot = {"time": time_ids, "action": np.full(n, action), "item": np.full(n, layout.mask_id)}
        event = np.stack([slot[name] for name in layout.fields], axis=1)
        return [np.concatenate([h, e[None]]) for h, e in zip(history, event)]
    last = torch.stack(
        [
            as_next_time(layout, torch.as_tensor(time_ids)),
            as_next_action(layout, torch.full((n,), action, dtype=torch.long)),
        ],
        dim=1,
    )
    prompts = []
    for row, h in enumerate(history):
        full = with_next_fields(torch.as_tensor(h)[None], layout, last=last[row : row + 1])
        prompts.append(full[0].numpy())
    return prompts
