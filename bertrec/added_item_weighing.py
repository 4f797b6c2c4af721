"""How much each prompt gives items added from content (cold start), chosen on held-out examples.

Items added after training (``item_content.add_items_from_content``) are ranked as a second pool beside the
trained items (``item_content.pooled_scores``): each pool is a distribution, and each prompt gives the new pool
the probability ``sigmoid(slope * gap + intercept)``, ``gap`` saying how strongly the prompt's raw scores point
at new items. Without a fit, every prompt gives the new pool its share of the catalogue. That prior is not the
best rule everywhere. On amazon-scientific's cold protocol (seed 0, test NDCG@10) a slope of 0.5 ranks cold
and warm targets better at once: cold 0.0741 against 0.0728, warm 0.0757 against 0.0708. On amazon-office no
slope beats the flat share, and a smaller share is worth more to the warm targets than it costs the cold ones.
So the rule is chosen where the answer is known: on examples whose targets include added items (offline, the
validation users whose target is a cold item; in production, interactions logged since the items were added).

Each candidate is a slope and a share of probability the new pool gets on average over the examples'
prompts (a multiple of its catalogue share). The intercept that gives that share is fit on the prompts alone,
without labels, and the candidate with the best NDCG@10 over all examples is kept. Trained items' order
among themselves, and new items' among themselves, never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import polars as pl
import torch

from bertrec.collators import TokenLayout
from bertrec.evaluation import EvalBatch, evaluate_scorer, prompt_scores
from bertrec.item_content import new_pool_gap
from bertrec.tokenization import EventTokenizer

SLOPES = (0.0, 0.5, 1.0)
SHARE_FACTORS = (1.0, 0.35, 0.5, 0.7, 1.4)  # times the catalogue share; the default rule first, so ties keep it


@dataclass
class WeighingChoice:
    """The chosen ``(slope, intercept)`` and every candidate's NDCG@10 on the examples it was chosen on."""

    weighing: tuple[float, float]
    ndcg_at_10: float
    added_targets: int  # examples whose target is an added item
    candidates: list[dict] = field(default_factory=list)


def intercept_for_share(gaps: torch.Tensor, slope: float, share: float) -> float:
    """The intercept ``b`` with ``mean(sigmoid(slope * gaps + b)) == share`` (the mean rises with ``b``)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"the new items' share must lie strictly between 0 and 1, got {share}")
    low, high = -100.0, 100.0
    for _ in range(100):
        middle = (low + high) / 2
        if torch.sigmoid(slope * gaps + middle).mean() > share:
            high = middle
        else:
            low = middle
    return (low + high) / 2


def fit_weighing(
    model,
    tokenizer: EventTokenizer,
    examples: pl.DataFrame,
    *,
    objective: str,
    action: str | None = None,
    exclude_seen: bool = True,
    slopes: tuple[float, ...] = SLOPES,
    share_factors: tuple[float, ...] = SHARE_FACTORS,
    device: torch.device | str = "cpu",
) -> WeighingChoice:
    """Choose the weighing of ``tokenizer``'s added items with the best NDCG@10 on ``examples`` (a split's
    examples frame: histories and ``target_item_id``), ranked as evaluation ranks them. One scoring pass per
    candidate plus one for the prompts' gaps. Store the result with ``with_weighing``."""
    added = tokenizer.spec.items_from_content
    if added <= 0:
        raise ValueError("this tokenizer has no items added from content: there is nothing to weigh")
    added_ids = set(tokenizer.spec.items[-added:])
    added_targets = int(examples["target_item_id"].is_in(list(added_ids)).sum())
    if added_targets == 0:
        raise ValueError(
            "none of the examples' targets is an item added from content, so every candidate would only be "
            "judged on trained items and the smallest share would always win; calibrate on examples that "
            "include interactions with the added items"
        )
    layout = TokenLayout.from_tokenizer(tokenizer)
    options = dict(objective=objective, ks=(10,), exclude_seen=exclude_seen, action=action)
    gaps: list[torch.Tensor] = []

    def raw_scores(batch: EvalBatch) -> torch.Tensor:  # the pools side by side, unweighed; gathers the gaps
        scores = _scorer(model, replace(layout, items_from_content=0), device)(batch)
        gaps.append(new_pool_gap(scores, added).cpu())
        return scores

    evaluate_scorer(raw_scores, tokenizer, examples, desc="gaps of added items", **options)
    all_gaps = torch.cat(gaps)
    catalogue_share = added / tokenizer.num_items
    candidates = []
    for slope in slopes:
        for factor in share_factors:
            intercept = intercept_for_share(all_gaps, slope, factor * catalogue_share)
            weighed = replace(layout, added_items_weighing=(slope, intercept))
            metrics = evaluate_scorer(
                _scorer(model, weighed, device), tokenizer, examples, desc=f"slope {slope} share x{factor}", **options
            )
            candidates.append(
                {"slope": slope, "share_factor": factor, "intercept": intercept, "ndcg@10": metrics["ndcg@10"]}
            )
    best = max(candidates, key=lambda c: c["ndcg@10"])  # the first of equals: the default rule's order
    return WeighingChoice((best["slope"], best["intercept"]), best["ndcg@10"], added_targets, candidates)


def with_weighing(tokenizer: EventTokenizer, weighing: tuple[float, float]) -> EventTokenizer:
    """The tokenizer whose added items are weighed by ``weighing`` (saved with it)."""
    spec = replace(tokenizer.spec, added_items_weighing=[float(w) for w in weighing])
    return EventTokenizer(spec, tokenizer.item_encoder)


def _scorer(model, layout: TokenLayout, device: torch.device | str):
    @torch.no_grad()
    def score(batch: EvalBatch) -> torch.Tensor:
        return prompt_scores(model, layout, batch.input_ids.to(device), batch.attention_mask.to(device))

    return score
