"""Full-catalogue ranking evaluation of models and baselines on an examples frame.

Every example is scored against every item in the vocabulary, batched on the device. The prompt follows the
training objective: the history (its most recent ``max_events - 1`` events) plus, where the layout has them,
the current-time bucket (in offline evaluation the target's timestamp stands for "now") and the masked slots.
The target's action is never in the prompt unless ``action`` conditions the task explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from bertrec import item_content, repeats, transitions
from bertrec.collators import TokenLayout, pad_sequences
from bertrec.data.parquet_parts import DEFAULT_CHUNK_EVENTS, Frame, frame_chunks
from bertrec.data.sequences import SEQUENCE_LIST_COLUMNS
from bertrec.data.splits import check_targets_not_in_history
from bertrec.metrics import leave_out, metrics_from_ranks, pessimistic_ranks
from bertrec.modeling import backbone_hidden, head_features, item_logits, model_objective
from bertrec.stacked import stacked_prompts
from bertrec.tokenization import EventTokenizer, action_token

ScoreFn = Callable[["EvalBatch"], torch.Tensor]
CANDIDATES = "candidates"  # optional list column of an examples frame: the only items to rank (re-ranking)


@dataclass
class EvalBatch:
    """What a scorer may look at: prompts, the last known history item, the items to exclude as seen."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    last_item: torch.Tensor  # item index of the last history event, -1 if unknown
    seen_rows: torch.Tensor  # (row, item index) pairs of every known history item
    targets: torch.Tensor
    candidate_rows: torch.Tensor | None = None  # (row, item index) pairs that may be ranked (re-ranking)


def encode_prompts(
    tokenizer: EventTokenizer, examples: pl.DataFrame, objective: str, action: str | None = None
) -> list[np.ndarray]:
    """Token ids of each example's prompt: truncated history + the slots for the event to predict."""
    spec = tokenizer.spec
    history = tokenizer.encode_sequences(examples.select(SEQUENCE_LIST_COLUMNS), max_events=spec.max_events - 1)
    slots: list[np.ndarray] = []
    time_ids = None
    if "time" in spec.fields:
        last_time = examples["timestamp"].list.last().to_numpy().astype(np.float64)
        gaps = examples["target_timestamp"].to_numpy().astype(np.float64) - last_time
        time_ids = tokenizer.time_bucket_ids(gaps)
        slots.append(time_ids)
    if spec.stacked:
        action_id = None if action is None or "action" not in spec.fields else tokenizer.token_id(action_token(action))
        return stacked_prompts(history, TokenLayout.from_tokenizer(tokenizer), objective, time_ids, action_id)
    n = examples.height
    if "action" in spec.fields and (action is not None or objective == "masked"):
        action_id = tokenizer.mask_id if action is None else tokenizer.token_id(action_token(action))
        slots.append(np.full(n, action_id))
    if objective == "masked":
        slots.append(np.full(n, tokenizer.mask_id))
    prompt = np.stack(slots, axis=1) if slots else np.zeros((n, 0), dtype=np.int64)
    return [np.concatenate([h, p]) for h, p in zip(history, prompt)]


def _batches(
    tokenizer: EventTokenizer, examples: pl.DataFrame, prompts: list[np.ndarray], batch_size: int
) -> Iterator[EvalBatch]:
    targets = tokenizer.item_indices(examples["target_item_id"])
    last_items = tokenizer.item_indices(examples["item_id"].list.last())
    lengths = examples["item_id"].list.len().to_numpy().astype(np.int64)
    history_items = tokenizer.item_indices(examples["item_id"].explode())
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    candidates = _candidate_pairs(tokenizer, examples) if CANDIDATES in examples.columns else None
    for start in range(0, examples.height, batch_size):
        stop = min(start + batch_size, examples.height)
        padded = pad_sequences(prompts[start:stop], tokenizer.pad_id)
        seen = history_items[offsets[start] : offsets[stop]]
        rows = np.repeat(np.arange(stop - start), lengths[start:stop])
        known = seen >= 0
        yield EvalBatch(
            input_ids=padded["input_ids"],
            attention_mask=padded["attention_mask"],
            last_item=torch.as_tensor(last_items[start:stop]),
            seen_rows=torch.as_tensor(np.stack([rows[known], seen[known]])),
            targets=torch.as_tensor(targets[start:stop]),
            candidate_rows=None if candidates is None else _rows_between(candidates, start, stop),
        )


def _candidate_pairs(tokenizer: EventTokenizer, examples: pl.DataFrame) -> np.ndarray:
    """(example row, item index) of every known candidate; unknown candidate ids cannot be ranked."""
    lengths = examples[CANDIDATES].list.len().to_numpy().astype(np.int64)
    items = tokenizer.item_indices(examples[CANDIDATES].explode().drop_nulls())
    rows = np.repeat(np.arange(examples.height), lengths)
    return np.stack([rows[items >= 0], items[items >= 0]])


def _rows_between(pairs: np.ndarray, start: int, stop: int) -> torch.Tensor:
    lo, hi = np.searchsorted(pairs[0], [start, stop])
    return torch.as_tensor(np.stack([pairs[0, lo:hi] - start, pairs[1, lo:hi]]))


def prompt_features(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Head features at each right-padded prompt's last position: what the output layer scores items from."""
    hidden = backbone_hidden(model, input_ids, attention_mask)
    last = attention_mask.sum(dim=1) - 1
    return head_features(model, hidden[torch.arange(len(last), device=hidden.device), last])


def prompt_scores(model, layout: TokenLayout, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Every item's score for each prompt: the stock logits at its last position, plus the transition scores of
    the last item's successors (``bertrec.transitions``), then combined with the repeat scores of the user's
    own items (``bertrec.repeats``: added, or mixed in by a gate), as the model was trained."""
    features = prompt_features(model, input_ids, attention_mask)
    scores = item_logits(model, features, layout.item_offset, layout.num_items).float()
    rows = torch.arange(len(input_ids), device=input_ids.device)
    last = attention_mask.sum(dim=1) - 1
    causal = model_objective(model) == "next"
    term = transitions.model_term(model, layout, input_ids, rows, last, causal=causal)
    if term is not None:
        scores = transitions.add_to(scores, term)
    bias, gate = repeats.bias_of(model), repeats.gate_of(model)
    if bias is not None:
        repeat = repeats.repeat_term(
            bias.float(),
            layout,
            input_ids,
            rows,
            last,
            causal=causal,
            num_items=layout.num_items,
            gate=None if gate is None else gate.float(),
        )
        scores = repeat.combine(scores)
    return item_content.pooled_scores(scores, layout.items_from_content, layout.added_items_weighing)


def model_scorer(model, tokenizer: EventTokenizer, device: torch.device | str = "cpu") -> ScoreFn:
    """Item scores at each prompt's last position, from the model's own head (equal to its stock logits)."""
    return layout_scorer(model, TokenLayout.from_tokenizer(tokenizer), device)


def layout_scorer(model, layout: TokenLayout, device: torch.device | str = "cpu") -> ScoreFn:
    """``model_scorer`` for a layout given directly (e.g. one whose added items are weighed otherwise), so a
    variant costs no tokenizer rebuild."""

    @torch.no_grad()
    def score(batch: EvalBatch) -> torch.Tensor:
        return prompt_scores(model, layout, batch.input_ids.to(device), batch.attention_mask.to(device))

    return score


def evaluate_scorer(
    score: ScoreFn,
    tokenizer: EventTokenizer,
    examples: Frame,
    *,
    objective: str = "next",
    ks: tuple[int, ...] = (10,),
    exclude_seen: bool = False,
    batch_size: int = 256,
    action: str | None = None,
    accelerator=None,
    desc: str = "evaluate",
    details: bool = False,
    max_score_elements: int = 2**26,
    chunk_events: int = DEFAULT_CHUNK_EVENTS,
) -> dict:
    """Rank every example's target among all items with ``score`` and return metrics plus miss counts.

    Besides HR/NDCG/MRR, ``coverage@K`` is the share of the catalogue that appears in at least one top-K list
    (a model that recommends only best sellers scores high on a popular-target log and low here). With
    ``details`` (single process only) the result also holds ``details``: each example's ``user_id``, target
    ``rank`` and ``top_items`` (item indices of its top-max(K) list), in the order of ``examples``, for paired
    significance tests and popularity analyses.

    With ``exclude_seen`` the user's history items are removed from the ranking; a target the user has seen
    before then cannot be recommended and counts as a miss (reported as ``repeat_targets_excluded``). When the
    examples have a ``candidates`` list column, each example ranks its target among its candidates only (a
    target missing from its candidates is a miss, counted as ``targets_not_in_candidates``).
    Under ``accelerate`` each process scores its shard and ranks are gathered without duplicates.

    Memory stays bounded for any catalogue: a batch holds at most ``max_score_elements`` scores (256 MB of
    float32 by default), so with a million items 64 examples are ranked at a time, each against every item.
    And for any number of users: ``examples`` may be a ``ParquetParts`` (a prepared folder's examples on disk),
    read about ``chunk_events`` history events at a time; only each user's rank (and, with ``details``, top
    list) is kept.
    """
    if examples.height == 0:
        raise ValueError("no examples to evaluate: the split is empty (too few events per user?)")
    if details and accelerator is not None and accelerator.num_processes > 1:
        raise ValueError("details=True needs a single process; evaluate in one process to get per-user details")
    is_main = accelerator is None or accelerator.is_main_process
    batch_size = max(1, min(batch_size, max_score_elements // max(tokenizer.num_items, 1)))
    top_k = min(max(ks), tokenizer.num_items)
    all_ranks, user_ids, tops = [], [], []
    counts = torch.zeros(3, dtype=torch.long)  # unknown targets, repeat targets excluded, missing candidates
    recommended = torch.zeros(len(ks), tokenizer.num_items, dtype=torch.long)
    progress = tqdm(desc=desc, disable=not is_main, total=-(-examples.height // batch_size), leave=False)
    for chunk in frame_chunks(examples, chunk_events):  # one chunk of users in memory at a time
        check_targets_not_in_history(chunk)
        if accelerator is not None and accelerator.num_processes > 1:
            chunk = chunk[np.array_split(np.arange(chunk.height), accelerator.num_processes)[accelerator.process_index]]
        if chunk.height == 0:
            continue
        prompts = encode_prompts(tokenizer, chunk, objective, action)
        by_length = np.argsort([len(p) for p in prompts], kind="stable")  # less padding; metrics ignore order
        chunk, prompts = chunk[by_length], [prompts[i] for i in by_length]
        ranks, top = [], []
        for batch in _batches(tokenizer, chunk, prompts, batch_size):
            scores = score(batch)
            if batch.candidate_rows is not None:
                allowed = torch.zeros_like(scores, dtype=torch.bool)
                allowed[batch.candidate_rows[0], batch.candidate_rows[1]] = True
                in_candidates = allowed.gather(1, batch.targets.clamp(min=0)[:, None].to(scores.device))[:, 0].cpu()
                counts[2] += int((~in_candidates & (batch.targets >= 0)).sum())
                scores = scores.masked_fill(~allowed.to(scores.device), float("-inf"))
            if exclude_seen:
                seen = batch.seen_rows.to(scores.device)
                targets_of_seen = batch.targets[seen[0].cpu()].to(scores.device)
                counts[1] += int(torch.unique(seen[0][seen[1] == targets_of_seen]).numel())
                scores = leave_out(scores, seen[0], seen[1])
            counts[0] += int((batch.targets < 0).sum())
            ranks.append(pessimistic_ranks(scores, batch.targets.to(scores.device)).cpu())
            best = scores.topk(top_k, dim=1)
            top.append(best.indices.masked_fill(best.values == float("-inf"), -1).cpu())  # -1: nothing rankable
            progress.update()
        top_lists = torch.cat(top)
        for i, k in enumerate(ks):
            recommended[i] += _recommended_items(top_lists[:, :k], tokenizer.num_items)
        original_order = np.argsort(by_length, kind="stable")
        all_ranks.append(torch.cat(ranks)[original_order])
        if details:
            user_ids.extend(chunk["user_id"][original_order].to_list())
            tops.append(top_lists.numpy()[original_order])
    progress.close()
    ranks = torch.cat(all_ranks) if all_ranks else torch.zeros(0)
    device = accelerator.device if accelerator is not None else ranks.device
    ranks, counts, recommended = ranks.to(device), counts.to(device), recommended.to(device)
    if accelerator is not None and accelerator.num_processes > 1:
        ranks = _gather_ragged(accelerator, ranks)
        counts = accelerator.reduce(counts, reduction="sum")
        recommended = accelerator.reduce(recommended, reduction="sum")
    metrics = metrics_from_ranks(ranks.cpu(), ks)
    for k, items in zip(ks, recommended):
        metrics[f"coverage@{k}"] = float((items > 0).float().mean())
    metrics["unknown_targets"] = int(counts[0])
    if exclude_seen:
        metrics["repeat_targets_excluded"] = int(counts[1])
    if CANDIDATES in examples.columns:
        metrics["targets_not_in_candidates"] = int(counts[2])
    if details:
        metrics["details"] = {
            "user_id": user_ids,
            "rank": ranks.cpu().numpy(),
            "top_items": np.concatenate(tops) if tops else np.zeros((0, top_k), dtype=np.int64),
        }
    return metrics


def _recommended_items(top: torch.Tensor, num_items: int) -> torch.Tensor:
    """How often each item appears in the given top-K lists (a count per catalogue item; -1 slots are empty)."""
    listed = top.reshape(-1)
    return torch.bincount(listed[listed >= 0], minlength=num_items)


def _gather_ragged(accelerator, values: torch.Tensor) -> torch.Tensor:
    """Gather per-process tensors of different lengths (shards differ by at most one example)."""
    padded = accelerator.pad_across_processes(values, dim=0, pad_index=-1.0)
    lengths = accelerator.gather(torch.tensor([values.numel()], device=values.device))
    gathered = accelerator.gather(padded).reshape(accelerator.num_processes, -1)
    return torch.cat([gathered[i, : int(n)] for i, n in enumerate(lengths)])


def evaluate_model(model, tokenizer: EventTokenizer, examples: Frame, **kwargs) -> dict:
    """``evaluate_scorer`` with the model's own scores; the model is put in eval mode and restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return evaluate_scorer(
            model_scorer(model, tokenizer, device),
            tokenizer,
            examples,
            objective=model_objective(model),
            **kwargs,
        )
    finally:
        model.train(was_training)
