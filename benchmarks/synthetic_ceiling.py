"""How good can a ranking of the built-in log's next event be? An approximate Bayes ceiling from the generator.

    python benchmarks/synthetic_ceiling.py      # writes benchmarks/results/synthetic_ceiling.json

The built-in log (``bertrec.data.synthetic``, default ``SyntheticShopConfig``) is drawn from known parameters,
so the next event's distribution given a history can be written down: the funnel (a cart or purchase of the
last item, weighed by how well the gap to the predicted event fits the funnel delay), a revisit, a related item
of the last view, or a draw from the session's category (inferred from the session's views), the user's
interests and popularity. Scoring every test user's target with that distribution gives a ceiling for any
model that sees the same prompt (history plus the gap bucket of the predicted event, as the recipe's prompt
has). It is approximate: the session category is inferred from the current session only, and the funnel is
read from the last event. Variants remove one piece of knowledge at a time, the most telling being
``related_from_counts``: the related items replaced by the training split's transition counts, which is what
a model can know of them.

Leave-one-out as in the recipe: test target = each user's last event, validation target = the one before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bertrec.data.synthetic import SyntheticShopConfig, _build_catalogue, _draw_users, _names, generate_shop_log
from bertrec.tokenization import DEFAULT_TIME_BOUNDARIES

OUT = Path(__file__).resolve().parent / "results" / "synthetic_ceiling.json"
VARIANTS = ("full", "related_from_counts", "no_gap", "no_interests", "no_session", "no_related")


class Ceiling:
    def __init__(self) -> None:
        c = self.config = SyntheticShopConfig()
        streams = [np.random.default_rng([c.seed, part]) for part in range(3)]
        self.cat = _build_catalogue(c, streams[0])
        self.users = _draw_users(c, self.cat, streams[1])
        names = _names("i", c.n_items, 5)[streams[0].permutation(c.n_items)].to_list()
        self.internal = {name: index for index, name in enumerate(names)}
        self.log = generate_shop_log(c)
        cdf = self.cat.view_cdf
        self.in_category = np.diff(np.concatenate([[0.0], cdf]))
        starts = self.cat.start[:-1]
        self.in_category[starts] = cdf[starts] - np.arange(c.n_categories)
        self.category_share = np.diff(np.concatenate([[0.0], self.cat.category_cdf]))
        self.slot_share = np.diff(np.concatenate([[0.0], self.cat.related_cdf]))
        self.boundaries = np.asarray(DEFAULT_TIME_BOUNDARIES)
        self.histories = [
            (int(user[1:]), [self.internal[i] for i in f["item_id"]], f["action"].to_list(), f["timestamp"].to_list())
            for (user,), f in self.log.group_by(["user_id"], maintain_order=True)
        ]
        self.counts: dict[int, dict[int, int]] = {}  # training transitions (all but each user's last two events)
        for _, items, _, _ in self.histories:
            for a, b in zip(items[:-3], items[1:-2]):
                if a != b:
                    self.counts.setdefault(a, {})[b] = self.counts.setdefault(a, {}).get(b, 0) + 1

    def bucket_probability(self, gap: float, median: float, sigma: float) -> float:
        """P(a lognormal gap falls in the time bucket of ``gap``): what the prompt's gap token says."""
        k = int(np.searchsorted(self.boundaries, gap, side="right"))
        lo = self.boundaries[k - 1] if k > 0 else 1e-9
        hi = self.boundaries[k] if k < len(self.boundaries) else 1e12

        def cdf(x: float) -> float:
            return 0.5 * (1 + math.erf((math.log(x) - math.log(median)) / (sigma * math.sqrt(2))))

        return max(cdf(hi) - cdf(lo), 1e-300)

    def interests(self, user: int, low: float = 0.0) -> np.ndarray:
        """Category shares of the user's interest draw, given the uniform it uses is at least ``low``."""
        shares, previous = np.zeros(self.config.n_categories), 0.0
        for category, edge in zip(self.users.favourites[user], self.users.share_cdf[user]):
            shares[category] += max(0.0, min(edge, 1.0) - max(previous, low))
            previous = edge
        return shares / (1.0 - low)

    def distribution(self, user, items, actions, times, target_time, variant: str) -> np.ndarray:
        c, cat, n = self.config, self.cat, self.config.n_items
        views = [i for i, a in zip(items, actions) if a == "view"]
        step, last_item, last_action = len(views), items[-1], actions[-1]
        liked = cat.category[last_item] in set(self.users.favourites[user].tolist())
        funnel = {"view": c.cart_prob_interest if liked else c.cart_prob, "cart": c.purchase_prob}.get(last_action, 0.0)
        gap = max(target_time - times[-1], 1.0)
        if variant == "no_gap":
            likelihood = (1.0, 1.0, 1.0)
        else:
            likelihood = (
                self.bucket_probability(gap, c.funnel_delay_median_s, c.funnel_delay_sigma),
                self.bucket_probability(gap, c.between_session_gap_median_h * 3600, c.between_session_gap_sigma),
                self.bucket_probability(gap, c.within_session_gap_median_s, c.within_session_gap_sigma),
            )
        weights = np.array([funnel, (1 - funnel) * c.new_session_prob, (1 - funnel) * (1 - c.new_session_prob)])
        weights = weights * np.array(likelihood)
        w_funnel, w_new, w_within = weights / weights.sum()
        if variant == "no_interests":
            interest, interest_high = self.category_share, self.category_share
        else:
            interest, interest_high = self.interests(user), self.interests(user, low=c.session_focus_prob)
        session = 0.1 * self.category_share + 0.9 * interest  # the session category, then its posterior
        view_positions = [k for k, a in enumerate(actions) if a == "view"]
        first = max([j for j, k in enumerate(view_positions) if k == 0 or times[k] - times[k - 1] > 600] or [0])
        for j in range(first, step) if variant != "no_session" else ():
            v, category = views[j], cat.category[views[j]]
            drawn = 0.1 * self.category_share[category] + 0.9 * (
                0.6 * (np.arange(c.n_categories) == category) + 0.4 * interest_high[category]
            )
            other, p_revisit = 0.0, 0.1 * (j >= 2)
            if j >= 2:
                window = views[max(0, j - 10) : j - 1]
                other += 0.1 * window.count(v) / (min(j, 10) - 1)
            p_transition = 0.45 if j > first else 0.0
            if p_transition:
                other += p_transition * self.slot_share[cat.related[views[j - 1]] == v].sum()
            session = session * (other + (1 - p_revisit - p_transition) * drawn * self.in_category[v])
            session = session / session.sum()
        revisit_p = c.revisit_prob if step >= 2 else 0.0
        revisit = np.zeros(n)
        for back in range(2, min(step, c.revisit_window) + 1):
            revisit[views[step - back]] += 1.0 / (min(step, c.revisit_window) - 1)
        explore = 0.1 * self.category_share
        new_session = revisit_p * revisit + (1 - revisit_p) * (
            (explore + 0.9 * (0.6 * (0.1 * self.category_share + 0.9 * interest) + 0.4 * interest_high))[cat.category]
            * self.in_category
        )
        drawn = (explore + 0.9 * (0.6 * session + 0.4 * interest_high))[cat.category] * self.in_category
        transition_p = c.transition_prob_after_purchase if last_action == "purchase" else c.transition_prob
        related = np.zeros(n)
        if variant == "related_from_counts":
            for item, count in self.counts.get(views[-1], {}).items():
                related[item] = count
            related = related / related.sum() if related.sum() else related
        elif variant == "no_related":
            related = drawn
        else:
            np.add.at(related, cat.related[views[-1]], self.slot_share)
        within = revisit_p * revisit + transition_p * related + (1 - revisit_p - transition_p) * drawn
        scores = w_new * new_session + w_within * within
        scores[last_item] += w_funnel
        return scores

    def ndcg(self, part: str, variant: str) -> float:
        gains = []
        for user, items, actions, times in self.histories:
            k = len(items) - (1 if part == "test" else 2)
            p = self.distribution(user, items[:k], actions[:k], times[:k], times[k], variant)
            rank = 1 + (p > p[items[k]]).sum() + 0.5 * ((p == p[items[k]]).sum() - 1)
            gains.append(1 / math.log2(rank + 1) if rank <= 10 else 0.0)
        return float(np.mean(gains))


def main() -> None:
    ceiling = Ceiling()
    results = {v: {part: round(ceiling.ndcg(part, v), 4) for part in ("valid", "test")} for v in VARIANTS}
    OUT.write_text(json.dumps({"ndcg@10": results, "users": len(ceiling.histories)}, indent=1) + "\n")
    for variant, figures in results.items():
        print(f"{variant:22s} valid {figures['valid']:.4f}  test {figures['test']:.4f}")


if __name__ == "__main__":
    main()
