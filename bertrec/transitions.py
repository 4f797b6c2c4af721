"""Transition scores: the log's own item-to-item counts, added to the scores of the last item's successors.

Where items have directed companions (an accessory after its product, a complement, the next episode) a
first-order transition table ranks the next item well: on the built-in log Markov alone reaches NDCG@10 0.33.
A transformer holds those links only through ``hidden``-wide item embeddings, a low-rank copy of a sparse
table: on targets new to the user the default model scored 0.243 against Markov's 0.262. Here the table itself
joins the logits, as FPMC's Markov term does but not factorised. For the prediction after an event of item
``x``, each of ``x``'s (at most ``max_successors``) most frequent successors ``j`` gets

    w[q, g, a] * log(1 + count(x -> j))

the log-ratio of ``j``'s add-one smoothed transition probability to that of an item never seen after ``x``,
weighted by a learned cell for the asked action ``q``, the gap ``g`` to the predicted event and the action
``a`` of ``x``'s event (indexed as in ``bertrec.repeats``): after a long gap a new session starts and the last
item says little; after a purchase its accessories follow. Repeats (``j == x``) are left to the repeat scores.

Counts come from the training windows. A training position leaves its own transition out (``count - 1`` for
its target), so the weights learn how well counts from *other* histories predict, which is what they are at
evaluation time (the held-out targets were never counted).

Saved beside the model: the table in ``transitions.safetensors`` (``successors`` and ``counts``, each
``[num_items, max_successors]``, ``-1``/``0`` padded), the weights in the stock ``config.json``
(``transition_weight``), so a plain ``transformers`` load plus ``safetensors`` reproduces the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bertrec import repeats
from bertrec.item_init import transition_counts

PARAMETER = "transition_weight"
FILE = "transitions.safetensors"
SUCCESSORS, COUNTS = "transition_successors", "transition_counts"  # model buffers (not in the state dict)
MAX_SUCCESSORS = 32
LEARNING_RATE_SCALE = repeats.LEARNING_RATE_SCALE


def count_table(windows: Sequence[np.ndarray], layout, max_successors: int = MAX_SUCCESSORS) -> tuple[np.ndarray, ...]:
    """``(successors, counts)``, each ``[num_items, max_successors]``: every item's most frequent next items
    (other than itself) in ``windows``, most frequent first; ``-1`` and ``0`` pad items with fewer."""
    num_items = layout.num_items
    successors = np.full((num_items, max_successors), -1, dtype=np.int64)
    counts = np.zeros((num_items, max_successors), dtype=np.float32)
    source, target, count = transition_counts(windows, layout)
    keep = source != target
    source, target, count = source[keep], target[keep], count[keep]
    order = np.lexsort((target, -count, source))  # by source, most frequent first, ties by item
    source, target, count = source[order], target[order], count[order]
    first = np.searchsorted(source, np.arange(num_items))
    rank = np.arange(len(source)) - first[source]
    kept = rank < max_successors
    successors[source[kept], rank[kept]] = target[kept]
    counts[source[kept], rank[kept]] = count[kept]
    return successors, counts


def weight_shape(layout) -> tuple[int, int, int]:
    asked, gaps, actions, _ = repeats.table_shape(layout)
    return (asked, gaps, actions)


def attach(model: torch.nn.Module, layout, windows: Sequence[np.ndarray] = ()) -> torch.nn.Parameter:
    """Give ``model`` the counted table of ``windows`` and weights of one (plain Markov log-ratios), or keep
    what it has; return the weights."""
    existing = weight_of(model)
    if existing is not None:
        return existing
    if not repeats.supported(layout):
        raise ValueError(
            "transition scores need one position per event: use layout 'item' or a stacked one such as "
            "'time+action+item', or pass --transition_scores false"
        )
    successors, counts = count_table(windows, layout)
    device = model.get_input_embeddings().weight.device
    _set_table(model, torch.as_tensor(successors), torch.as_tensor(counts))
    parameter = torch.nn.Parameter(torch.ones(weight_shape(layout), device=device))
    model.register_parameter(PARAMETER, parameter)
    return parameter


def _set_table(model: torch.nn.Module, successors: torch.Tensor, counts: torch.Tensor) -> None:
    device = model.get_input_embeddings().weight.device
    base = repeats.base_model(model)
    base.register_buffer(SUCCESSORS, successors.long().to(device), persistent=False)
    base.register_buffer(COUNTS, counts.float().to(device), persistent=False)


def weight_of(model: torch.nn.Module) -> torch.nn.Parameter | None:
    return repeats.base_model(model)._parameters.get(PARAMETER)


def table_of(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    base = repeats.base_model(model)
    return base._buffers[SUCCESSORS], base._buffers[COUNTS]


def save_table(model: torch.nn.Module, folder: str | Path) -> None:
    """Write ``transitions.safetensors`` into ``folder`` when the model has transition scores."""
    if weight_of(model) is None:
        return
    successors, counts = table_of(model)
    tensors = {"successors": successors.cpu().contiguous(), "counts": counts.cpu().contiguous()}
    save_file(tensors, str(Path(folder) / FILE))


def load(model: torch.nn.Module, folder: str | Path) -> None:
    """A saved model's table and weights (``transitions.safetensors``, ``config.transition_weight``), for
    scoring and fine-tuning. A folder with one and not the other is refused: it would score differently."""
    values = getattr(model.config, PARAMETER, None)
    path = Path(folder) / FILE
    if values is None and not path.exists():
        return
    if values is None or not path.exists():
        raise ValueError(
            f"{folder}: config.json and {FILE} disagree on transition scores (one is missing); the folder is "
            "incomplete: save the model again or copy the missing file"
        )
    table = load_file(str(path))
    _set_table(model, table["successors"], table["counts"])
    device = model.get_input_embeddings().weight.device
    model.register_parameter(PARAMETER, torch.nn.Parameter(torch.tensor(values, dtype=torch.float32, device=device)))


def transition_term(
    weight: torch.Tensor,
    successors: torch.Tensor,
    counts: torch.Tensor,
    layout,
    input_ids: torch.Tensor,
    rows: torch.Tensor,
    positions: torch.Tensor,
    *,
    causal: bool,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(items, values)``, each ``[n, max_successors]``, for the predictions at ``(rows, positions)``: the
    last event's successors and their weighted log counts (0 where there is none). The last event is the one
    at the position for causal models and the one before it for masked ones. ``targets`` (training): each
    row's own transition is left out of its count."""
    last = positions if causal else positions - 1
    items = layout.item_index(layout.event_items(input_ids))[rows, last.clamp(min=0)]
    known = (last >= 0) & (items >= 0) & (items < len(successors))  # items added after counting have no row
    source = torch.where(known, items, 0)
    following, count = successors[source], counts[source]
    if targets is not None:
        count = count - (following == targets[:, None]).to(count.dtype)
    action = repeats._event_actions(layout, input_ids)[rows, last.clamp(min=0)]
    asked = repeats._asked_action(layout, input_ids, rows, positions, causal)
    gap = repeats._asked_gap(layout, input_ids, rows, positions, causal) if weight.shape[1] > 1 else 0 * asked
    values = weight[asked, gap, action][:, None] * torch.log1p(count.clamp(min=0))
    valid = known[:, None] & (following >= 0)
    return following.clamp(min=0), torch.where(valid, values, torch.zeros_like(values))


def add_to(logits: torch.Tensor, term: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    items, values = term
    return logits.scatter_add(1, items, values.to(logits.dtype))


def model_term(model, layout, input_ids, rows, positions, *, causal: bool, targets=None):
    """The term for ``model`` (``None`` when it has no transition scores)."""
    weight = weight_of(model)
    if weight is None:
        return None
    successors, counts = table_of(model)
    return transition_term(
        weight, successors, counts, layout, input_ids, rows, positions, causal=causal, targets=targets
    )
