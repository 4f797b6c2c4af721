"""Repeat scores: items the user already has, scored by how they had them, how long ago and what is asked.

On repurchase-heavy logs a "recently seen" ranking beats transformers that must rediscover copying through
attention and tied embeddings (Tmall next purchase: recent 0.647 against 0.604). Repeat-aware recommenders
(RepeatNet's repeat mode, personalised-popularity terms in the logits) add the user's own items to the score
directly. Here each earlier event ``k`` offers ``repeat_bias[q, g, a_k, r_k]`` to its item's logit, where
``q`` is the asked action of the predicted event (0: not asked), ``g`` its gap bucket (1 + the time bucket of
the gap from the last event to it; 0: not known or a layout without times), ``a_k`` the event's action (0:
unknown), and ``r_k = min(floor(log2(d + 1)), 7)`` buckets the distance ``d`` in events between it and the
predicted event (0: the last event). The gap is what tells a funnel step (a cart half a minute after a view:
the same item) from the next view (another item), and a repurchase cycle from a return next morning; the
transformer cannot pass that to one item's logit as directly as this cell does.

Two ways to use the values (``RepeatScores.combine``). With a gate table (``repeat_gate[q, g, a_last]``, the
default for new models) they form a distribution over the history, the softmax over its events summed per
item, mixed with the model's own distribution: ``P = gate * repeat + (1 - gate) * softmax(logits)``, as
RepeatNet's repeat and explore modes; the scores are ``log P``. That keeps "the same item again" apart from the
transformer's logit for that item, which it learns for the next *new* item (it pushes the item just viewed
down, as the next view is another one), so no per-item correction is needed. Without a gate (folders saved
before it, ``--repeat_gate false``) each item's largest value is added to its logit. Either way the tables
train with the rest of the model through the same cross-entropy.

The table is small (``(actions + 1)^2 x (time buckets + 1) x 8`` values; tables saved before the gap
dimension existed have none and load as a single gap cell) and is saved in the stock ``config.json`` as
``repeat_bias`` (a nested list; the gate as ``repeat_gate``), so a plain ``transformers`` load keeps it and the
model card's snippet applies it.
During training it is a parameter of the model (checkpointed with it); ``folded_into_config`` moves it into
the config for ``save_pretrained``, and ``load_from_config`` makes it a parameter again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

PARAMETER = "repeat_bias"
GATE = "repeat_gate"  # present: the repeat distribution is mixed with the model's (``RepeatScores.combine``)
RECENCY_BUCKETS = 8
LEARNING_RATE_SCALE = 10.0  # a handful of scalars that must reach logit scale in a few hundred steps


def supported(layout) -> bool:
    """Layouts with one position per event: ``item`` and the stacked ones."""
    return layout.stacked or layout.tokens_per_event == 1


def table_shape(layout) -> tuple[int, int, int, int]:
    actions = layout.num_actions + 1 if layout.has_action else 1
    gaps = layout.num_time_buckets + 1 if layout.stacked and layout.has_time else 1
    return (actions, gaps, actions, RECENCY_BUCKETS)


def attach(
    model: torch.nn.Module, layout, windows: Sequence[np.ndarray] = (), gated: bool = False
) -> torch.nn.Parameter:
    """Give ``model`` a repeat table (or keep the one it has) and return it: ``initial_table(windows)``, so
    training starts from the log's own repeat rates, not from zero. ``gated``: also a gate table (asked
    action, gap, last event's action) that mixes the repeat distribution with the model's, started at the
    log's share of next items found in their window's history."""
    existing = bias_of(model)
    if existing is not None:
        return existing
    if not supported(layout):
        raise ValueError(
            "repeat scores need one position per event: use layout 'item' or a stacked one such as "
            "'time+action+item', or pass --repeat_scores false"
        )
    values = torch.as_tensor(initial_table(windows, layout), device=model.get_input_embeddings().weight.device)
    parameter = torch.nn.Parameter(values)
    model.register_parameter(PARAMETER, parameter)
    if gated:
        asked, gaps, actions, _ = table_shape(layout)
        share = min(max(repeat_share(windows, layout), 1e-3), 1 - 1e-3)
        gate = torch.full((asked, gaps, actions), float(np.log(share / (1 - share))), device=values.device)
        model.register_parameter(GATE, torch.nn.Parameter(gate))
    return parameter


def every_nth(windows: Sequence[np.ndarray], step: int):
    """Every ``step``-th window, read by index: memory-mapped windows are never all read into memory."""
    return (windows[i] for i in range(0, len(windows), step))


def repeat_share(windows: Sequence[np.ndarray], layout, max_windows: int = 2048) -> float:
    """The share of next events (after the first of each window) whose item is earlier in the window."""
    hits = total = 0
    for window in every_nth(windows, max(1, len(windows) // max_windows)):
        items = (window[:, layout.item_field] if window.ndim == 2 else window).tolist()
        for k in range(1, len(items)):
            hits += items[k] in items[:k]
            total += 1
    return hits / max(total, 1)


def initial_table(windows: Sequence[np.ndarray], layout, max_windows: int = 2048) -> np.ndarray:
    """The table a model with flat item scores would need: ``log(P(repeat) * num_items)`` per cell.

    For each next event of (up to ``max_windows``) training windows and each earlier event of its window, how
    often the next item is that event's item, by (next action, next gap, that event's action, recency bucket);
    the not-asked and not-known cells pool the next actions and gaps. A freshly initialised model scores every
    item about equally, so adding these log-odds makes its first ranking the log's own "recently seen" ranking,
    which the rest of the model then corrects. Cells never observed start at 0 (no bonus). Add-one smoothing
    keeps rare cells near chance.
    """
    shape = table_shape(layout)
    hits, totals = np.zeros(shape), np.zeros(shape)
    step = max(1, len(windows) // max_windows)
    for window in every_nth(windows, step):
        items = (window[:, layout.item_field] if window.ndim == 2 else window) - layout.item_offset
        items = np.where((items >= 0) & (items < layout.num_items), items, -1)
        actions, gaps = np.zeros(len(items), dtype=np.int64), np.zeros(len(items), dtype=np.int64)
        if layout.stacked and layout.has_action:
            index = window[:, layout.fields.index("action")] - layout.action_offset
            actions = np.where((index >= 0) & (index < layout.num_actions), index + 1, 0)
        if shape[1] > 1:
            index = window[:, layout.fields.index("time")] - layout.time_offset
            gaps = np.where((index >= 0) & (index < layout.num_time_buckets), index + 1, 0)
        length = len(items)
        if length < 2:
            continue
        target, position = np.arange(1, length), np.arange(length - 1)
        history = np.arange(length)
        distance = position[:, None] - history[None, :]
        valid = (distance >= 0) & (items[None, :] >= 0) & (items[target][:, None] >= 0)
        bucket = np.minimum(np.floor(np.log2(np.maximum(distance, 0) + 1)).astype(int), RECENCY_BUCKETS - 1)
        hit = items[None, :] == items[target][:, None]
        asked = np.broadcast_to(actions[target][:, None], distance.shape)[valid]
        gap = np.broadcast_to(gaps[target][:, None], distance.shape)[valid]
        past = np.broadcast_to(actions[None, :], distance.shape)
        cell = (past * shape[3] + bucket)[valid]
        none = np.zeros_like(asked)
        asked_cells = (none, asked) if shape[0] > 1 else (none,)  # each known detail is also pooled into its
        gap_cells = (none, gap) if shape[1] > 1 else (none,)  # "not known" cell
        for query, known_gap in ((q, g) for q in asked_cells for g in gap_cells):
            flat = (query * shape[1] + known_gap) * shape[2] * shape[3] + cell
            totals += np.bincount(flat, minlength=totals.size).reshape(shape)
            hits += np.bincount(flat, weights=hit[valid], minlength=hits.size).reshape(shape)
    rate = (hits + 1) / (totals + 2)
    return np.where(totals > 0, np.log(rate * max(layout.num_items, 1)), 0.0).astype(np.float32)


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The stock model under a peft wrapper (the model itself otherwise): where score tables are registered."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def bias_of(model: torch.nn.Module) -> torch.nn.Parameter | None:
    return base_model(model)._parameters.get(PARAMETER)


def gate_of(model: torch.nn.Module) -> torch.nn.Parameter | None:
    return base_model(model)._parameters.get(GATE)


def load_from_config(model: torch.nn.Module) -> None:
    """A saved model's table (``config.repeat_bias``) as a parameter again, for scoring and fine-tuning."""
    values = getattr(model.config, PARAMETER, None)
    device = model.get_input_embeddings().weight.device
    gate = getattr(model.config, GATE, None)
    if gate is not None and gate_of(model) is None:
        model.register_parameter(GATE, torch.nn.Parameter(torch.tensor(gate, dtype=torch.float32, device=device)))
    if values is not None and bias_of(model) is None:
        tensor = torch.tensor(values, dtype=torch.float32, device=device)
        if tensor.dim() == 3:  # saved before tables had a gap dimension: one "not known" gap cell
            tensor = tensor[:, None]
        model.register_parameter(PARAMETER, torch.nn.Parameter(tensor))


@contextlib.contextmanager
def folded_into_config(
    model: torch.nn.Module, state_dict: dict | None = None, names: Sequence[str] = (PARAMETER,)
) -> Iterator[dict | None]:
    """While saving: small score tables (the repeat table, ``bertrec.transitions``' weights: ``names``) live in
    ``config.json`` and not among the weights, so the folder is a plain stock model that loads without
    unexpected keys. Yields the state dict to save (``None``: the model's)."""
    base = base_model(model)
    present = [name for name in names if base._parameters.get(name) is not None]
    parameters = {name: base._parameters[name] for name in present}
    for name, parameter in parameters.items():
        values = state_dict.get(name, parameter) if state_dict is not None else parameter
        setattr(base.config, name, values.detach().float().cpu().tolist())
        del base._parameters[name]
    try:
        if state_dict is None:
            yield None
        else:
            yield {k: v for k, v in state_dict.items() if k not in parameters}
    finally:
        for name, parameter in parameters.items():
            base.register_parameter(name, parameter)


def repeat_term(
    bias: torch.Tensor,
    layout,
    input_ids: torch.Tensor,
    rows: torch.Tensor,
    positions: torch.Tensor,
    *,
    causal: bool,
    num_items: int,
    gate: torch.Tensor | None = None,
) -> RepeatScores:
    """Repeat scores of the predictions at ``(rows, positions)`` of ``input_ids``.

    Causal models predict the event after ``positions`` and have read it: history is ``k <= p`` at distance
    ``p - k``. Masked models predict the event *at* ``positions``: history is ``k < p`` at distance ``p - 1 - k``
    (only the past, as at inference; masked items are not items and add nothing).
    """
    items = layout.item_index(layout.event_items(input_ids))[rows]  # [n, length]
    steps = torch.arange(items.shape[1], device=items.device)
    distance = positions[:, None] - steps[None, :] - (0 if causal else 1)
    valid = (distance >= 0) & (items >= 0)
    bucket = torch.floor(torch.log2(distance.clamp(min=0).float() + 1)).long().clamp(max=RECENCY_BUCKETS - 1)
    actions = _event_actions(layout, input_ids)[rows]
    query = _asked_action(layout, input_ids, rows, positions, causal)
    gap = _asked_gap(layout, input_ids, rows, positions, causal) if bias.shape[1] > 1 else torch.zeros_like(query)
    values = bias[query[:, None], gap[:, None], actions, bucket]
    gate_logit = None
    if gate is not None:
        last = (positions if causal else positions - 1).clamp(min=0)
        gate_logit = gate[query, gap, actions[torch.arange(len(rows), device=rows.device), last]]
    return RepeatScores(torch.where(valid, items, 0), values, valid, gate_logit)


class RepeatScores(NamedTuple):
    """Repeat scores of ``values [n, length]`` at item indices ``items [n, length]`` (``valid`` marks real
    history events): an item's bonus is its largest value, that of its most telling occurrence."""

    items: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor
    gate_logit: torch.Tensor | None = None

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """The final scores: ``add_to`` the logits, or with a gate, log-probabilities of the mixture
        ``gate * repeat(item) + (1 - gate) * softmax(logits)(item)``, where ``repeat`` is the softmax of the
        values over the history's events, summed per item (a copy distribution, as in RepeatNet). The mixture
        keeps "the same item again" apart from the model's logit for that item, which it learns for the next
        *new* item; a history without events keeps the model's distribution."""
        if self.gate_logit is None:
            return self.add_to(logits)
        log_share, gate = self._log_shares_and_gate(logits.dtype)
        shares = torch.zeros_like(logits).scatter_add(1, self.items, torch.exp(log_share).masked_fill(~self.valid, 0))
        log_repeat = torch.where(shares > 0, torch.log(shares.clamp_min(1e-30)), float("-inf"))
        return _mixture(gate[:, None], log_repeat, torch.log_softmax(logits, dim=1))

    def target_log_prob(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``combine(logits)`` read at ``targets [n]`` only: the training loss needs one mixture probability per
        row, so the copy distribution is summed over the row's history events that hold the target
        (``[n, length]`` work) and the model's share is ``logit - logsumexp``, the one pass over all items that
        cross-entropy makes anyway. Same value and gradient as the dense path at a fraction of its cost."""
        if self.gate_logit is None:
            return torch.log_softmax(self.add_to(logits), dim=1).gather(1, targets[:, None])[:, 0]
        log_share, gate = self._log_shares_and_gate(logits.dtype)
        holds_target = self.valid & (self.items == targets[:, None])
        log_repeat = torch.logsumexp(log_share.masked_fill(~holds_target, float("-inf")), dim=1)
        log_model = logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=1)
        return _mixture(gate, log_repeat, log_model)

    def _log_shares_and_gate(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Each history event's log share of the copy distribution (softmax of the values over the row's
        events), and the gate logit, ``-inf`` for a row without history (the model's distribution alone)."""
        values = self.values.to(dtype).masked_fill(~self.valid, float("-inf"))
        has_history = self.valid.any(dim=1)
        log_share = values - torch.logsumexp(values, dim=1, keepdim=True).masked_fill(~has_history[:, None], 0.0)
        return log_share, self.gate_logit.to(dtype).masked_fill(~has_history, float("-inf"))

    def add_to(self, logits: torch.Tensor) -> torch.Tensor:
        """Each item's largest value added to its logit, in ``O(n * length)`` memory: sorted by value, then
        (stably) by item, an item's first entry is its largest; only first entries are scattered."""
        values = self.values.to(logits.dtype).masked_fill(~self.valid, float("-inf"))
        by_value = values.argsort(dim=1, descending=True, stable=True)
        items = self.items.gather(1, by_value)
        by_item = items.argsort(dim=1, stable=True)
        order = by_value.gather(1, by_item)
        items, values, valid = items.gather(1, by_item), values.gather(1, order), self.valid.gather(1, order)
        first = torch.ones_like(valid)
        first[:, 1:] = items[:, 1:] != items[:, :-1]
        return logits.scatter_add(1, items, torch.where(first & valid, values, torch.zeros_like(values)))


def _mixture(gate_logit: torch.Tensor, log_repeat: torch.Tensor, log_model: torch.Tensor) -> torch.Tensor:
    """``log(gate * repeat + (1 - gate) * model)`` from log-probabilities, stable at both ends of the gate."""
    return torch.logaddexp(
        torch.nn.functional.logsigmoid(gate_logit) + log_repeat,
        torch.nn.functional.logsigmoid(-gate_logit) + log_model,
    )


def _event_actions(layout, input_ids: torch.Tensor) -> torch.Tensor:
    """1 + each event's action index, 0 where unknown or masked (and everywhere without action fields)."""
    if not (layout.stacked and layout.has_action):
        return torch.zeros(input_ids.shape[:2], dtype=torch.long, device=input_ids.device)
    index = input_ids[..., layout.fields.index("action")] - layout.action_offset
    return torch.where((index >= 0) & (index < layout.num_actions), index + 1, 0)


def _asked_action(layout, input_ids, rows, positions, causal: bool) -> torch.Tensor:
    """1 + the predicted event's action where the prompt names it, else 0."""
    if not (layout.stacked and layout.has_action):
        return torch.zeros(len(rows), dtype=torch.long, device=input_ids.device)
    if causal:
        column, offset = len(layout.fields) + (1 if layout.has_time else 0), layout.next_action_offset
    else:
        column, offset = layout.fields.index("action"), layout.action_offset
    index = input_ids[rows, positions, column] - offset
    return torch.where((index >= 0) & (index < layout.num_actions), index + 1, 0)


def _asked_gap(layout, input_ids, rows, positions, causal: bool) -> torch.Tensor:
    """1 + the time bucket of the gap to the predicted event where the prompt carries it, else 0."""
    if causal:
        column, offset = len(layout.fields), layout.next_time_offset
    else:
        column, offset = layout.fields.index("time"), layout.time_offset
    index = input_ids[rows, positions, column] - offset
    return torch.where((index >= 0) & (index < layout.num_time_buckets), index + 1, 0)
