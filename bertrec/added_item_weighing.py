"""How much each prompt gives items added from content (cold start), chosen on held-out examples.

Items added after training (``item_content.add_items_from_content``) are ranked as a second pool beside the
trained items (``item_content.pooled_scores``): each pool is a distribution, and each prompt gives the new pool
the probability ``sigmoid(slope * gap + intercept)``, ``gap`` saying how strongly the prompt's raw scores point
at new items. Without a fit, every prompt gives the new pool its share of the catalogue. That prior is not the
best rule everywhere: in the cold protocol of ``benchmarks/cold_items.py`` it gives cold targets a high rank at
a 9-10% cost to warm ones, a slope of 0.5 to 1 ranks both better on amazon-scientific, and a smaller share is
worth more to warm targets than it costs cold ones on amazon-office. So the rule is chosen where the answer is
known: on examples whose targets include added items (offline, the validation users whose target is a cold
item; in production, interactions logged since the items were added).

Each candidate is a slope and a share of probability the new pool gets on average over the examples'
prompts (a multiple of its catalogue share). The intercept that gives that share is fit on the prompts alone,
without labels. NDCG@10 over all examples is flat near its best (on amazon-office about half of the 15
candidates lie within 0.001 of it, and they rank cold test targets anywhere from 0.6x to 3.6x a text
baseline), so the best candidate alone is close to a coin toss among rules that treat new items very
differently. The choice follows the one-standard-error rule instead: of the candidates whose NDCG@10 is within
one standard error (of the per-example difference) of the best, the one that gives new items the largest
share. Offline NDCG cannot tell those apart, and a new item needs to be shown to gather the interactions that
will train it. What it gains and costs is in BENCHMARKS.md ("The weighing chosen on validation"). Trained
items' order among themselves, and new items' among themselves, never change.

That rule settles between new and known items by their shares of the examples, which is not a balance anyone
chose: in the cold protocol known (warm) targets lost 8% on amazon-office and 1% on amazon-scientific. Part of a
loss is training without the new items, part is the new items taking top slots (office, one seed: ranking no new
item cost 0.5%, the chosen rule 5.4%), and that part is measurable on the examples: ``max_known_loss`` is a
budget, the share of the known-target examples' NDCG@10 that new items may take from them against a ranking
without new items. Only candidates within it are considered (the one losing least when none is), and the
one-standard-error rule chooses among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl
import torch

from bertrec.collators import TokenLayout
from bertrec.evaluation import EvalBatch, evaluate_scorer, layout_scorer
from bertrec.item_content import new_pool_gap
from bertrec.metrics import per_row_ndcg
from bertrec.tokenization import EventTokenizer

SLOPES = (0.0, 0.5, 1.0)
SHARE_FACTORS = (0.35, 0.5, 0.7, 1.0, 1.4)  # times the catalogue share
NO_NEW_ITEMS = -1e4  # an intercept giving the new pool a share of e^-10000: the trained items ranked alone


@dataclass
class WeighingChoice:
    """The chosen ``(slope, intercept)`` and every candidate's NDCG@10 (mean and standard error of its
    difference to the best candidate, per example) on the examples it was chosen on."""

    weighing: tuple[float, float]
    ndcg_at_10: float
    added_targets: int  # examples whose target is an added item
    candidates: list[dict] = field(default_factory=list)
    max_known_loss: float | None = None


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
    max_known_loss: float | None = None,
    device: torch.device | str = "cpu",
) -> WeighingChoice:
    """Choose the weighing of ``tokenizer``'s added items on ``examples`` (a split's examples frame: histories
    and ``target_item_id``), ranked as evaluation ranks them: the largest share within one standard error of
    the best NDCG@10 (``one_standard_error_choice``), among the candidates whose known-target loss is within
    ``max_known_loss`` when it is given (``within_known_loss``; one more scoring pass, without new items). One
    scoring pass per candidate plus one for the prompts' gaps. Store the result with ``with_weighing``."""
    added = tokenizer.spec.items_from_content
    if added <= 0:
        raise ValueError("this tokenizer has no items added from content: there is nothing to weigh")
    added_target = examples["target_item_id"].is_in(tokenizer.spec.items[-added:]).to_numpy()  # per example
    added_targets = int(added_target.sum())
    if added_targets == 0:
        raise ValueError(
            "none of the examples' targets is an item added from content, so every candidate would only be "
            "judged on trained items and the smallest share would always win; calibrate on examples that "
            "include interactions with the added items"
        )
    layout = TokenLayout.from_tokenizer(tokenizer)
    options = dict(objective=objective, ks=(10,), exclude_seen=exclude_seen, action=action)
    unweighed = layout_scorer(model, replace(layout, items_from_content=0), device)  # the pools side by side
    gaps: list[torch.Tensor] = []

    def raw_scores(batch: EvalBatch) -> torch.Tensor:
        scores = unweighed(batch)
        gaps.append(new_pool_gap(scores, added).cpu())
        return scores

    evaluate_scorer(raw_scores, tokenizer, examples, desc="gaps of added items", **options)
    all_gaps = torch.cat(gaps)
    catalogue_share = added / tokenizer.num_items

    def per_example_ndcg(weighing: tuple[float, float], desc: str) -> tuple[np.ndarray, float]:
        weighed = replace(layout, added_items_weighing=weighing)
        metrics = evaluate_scorer(
            layout_scorer(model, weighed, device), tokenizer, examples, desc=desc, details=True, **options
        )
        return per_row_ndcg(metrics["details"]["rank"], 10), metrics["ndcg@10"]

    candidates, per_example = [], []
    for slope in slopes:
        for factor in share_factors:
            intercept = intercept_for_share(all_gaps, slope, factor * catalogue_share)
            ndcg, mean = per_example_ndcg((slope, intercept), f"slope {slope} share x{factor}")
            per_example.append(ndcg)
            candidates.append({"slope": slope, "share_factor": factor, "intercept": intercept, "ndcg@10": mean})
    per_example = np.stack(per_example)
    considered = list(range(len(candidates)))
    if max_known_loss is not None:
        without_new, _ = per_example_ndcg((0.0, NO_NEW_ITEMS), "without added items")
        considered = within_known_loss(per_example, without_new, ~added_target, candidates, max_known_loss)
    index = considered[one_standard_error_choice(per_example[considered], [candidates[i] for i in considered])]
    chosen = candidates[index]
    return WeighingChoice(
        (chosen["slope"], chosen["intercept"]), chosen["ndcg@10"], added_targets, candidates, max_known_loss
    )


def within_known_loss(
    per_example: np.ndarray, without_new: np.ndarray, known: np.ndarray, candidates: list[dict], budget: float
) -> list[int]:
    """Indices of the candidates whose NDCG@10 over the known-target examples (``known``, a mask) is at most
    ``budget`` (a share) below that of the ranking without new items (``without_new``, per example); the one
    losing least when none is. Fills in each candidate's ``known_target_loss``."""
    if not known.any():
        raise ValueError("a known-target loss needs examples whose target is a trained item")
    reference = float(without_new[known].mean())
    losses = [1.0 - float(row[known].mean()) / reference if reference > 0 else 0.0 for row in per_example]
    for candidate, loss in zip(candidates, losses):
        candidate["known_target_loss"] = loss
    within = [i for i, loss in enumerate(losses) if loss <= budget]
    return within or [int(np.argmin(losses))]


def one_standard_error_choice(per_example: np.ndarray, candidates: list[dict]) -> int:
    """Index of the candidate with the largest share among those within one standard error of the best
    (``per_example [candidates, examples]`` NDCG@10); ties by the smaller slope, then the earlier candidate.
    Fills in each candidate's ``difference_to_best`` and ``standard_error``."""
    means = per_example.mean(axis=1)
    best = int(means.argmax())
    within = []
    for index, candidate in enumerate(candidates):
        difference = per_example[best] - per_example[index]
        error = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
        candidate.update(difference_to_best=float(difference.mean()), standard_error=error)
        if difference.mean() <= error:
            within.append(index)
    return max(within, key=lambda i: (candidates[i]["share_factor"], -candidates[i]["slope"], -i))


def with_weighing(tokenizer: EventTokenizer, weighing: tuple[float, float]) -> EventTokenizer:
    """The tokenizer whose added items are weighed by ``weighing`` (saved with it)."""
    spec = replace(tokenizer.spec, added_items_weighing=[float(w) for w in weighing])
    return EventTokenizer(spec, tokenizer.item_encoder)
