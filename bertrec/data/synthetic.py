"""The built-in synthetic shop log: every recipe's default dataset, with a known structure a model can learn.

It is synthetic so that a newcomer runs the whole path with no download, and so that tests can assert that a
model learned something *known*. The structure rewards models in a predictable order:

- popularity: Zipf item popularity overall and within each category, so "most popular" is a fair floor;
- Markov: every item has a few *directed* related items (complements, accessories) that the next view often
  follows, so the last item predicts the next far better than popularity does, and order matters;
- beyond Markov: each user has lasting interests in a few categories, a session keeps one category in focus,
  and users come back to items seen earlier; only a model that reads the whole history can use these;
- actions: views lead to carts and purchases (more often in a favourite category), and a purchase is followed
  by an accessory more often than a view is, so action tokens carry signal too; time gaps mark sessions.

The simulation is vectorised across users: one loop iteration per step (one view and its funnel events) for
all users still active, no per-event Python, so ten million events take seconds and a few GB at most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import polars as pl

ACTIONS = ("view", "cart", "purchase")


@dataclass
class SyntheticShopConfig:
    """Sizes and behaviour of the synthetic shop. The defaults define the built-in dataset: never change them.

    The committed tokenizer (``tokenizer_assets/synthetic-shop``) and every published synthetic number come
    from the default log (184,616 events, a fraction of a second to generate), so changing a default, or the
    order in which the generator draws random numbers, silently changes the benchmark. New behaviour goes
    behind a new field whose default keeps the old output.
    """

    n_users: int = 4000
    n_items: int = 3000
    n_categories: int = 30
    seed: int = 0
    # catalogue: item weight = rank ** -zipf_exponent; related items drawn with weight ** related_popularity
    zipf_exponent: float = 0.8
    related_per_item: int = 5
    related_same_category_prob: float = 0.8
    related_popularity: float = 0.5
    # next view, by mode: a related item of the current one, an item seen earlier, or an interest draw
    transition_prob: float = 0.45
    transition_prob_after_purchase: float = 0.8
    revisit_prob: float = 0.1
    revisit_window: int = 10
    # user interests: a Dirichlet share over a few favourite categories, a session focus, some exploration
    min_favourite_categories: int = 2
    max_favourite_categories: int = 4
    interest_concentration: float = 1.0
    session_focus_prob: float = 0.6
    explore_prob: float = 0.1
    # history length in steps (views): lognormal with this mean, clipped
    mean_steps_per_user: float = 40.0
    steps_sigma: float = 0.9
    min_steps_per_user: int = 5
    max_steps_per_user: int = 200
    # funnel: view -> cart (higher in a favourite category) -> purchase
    cart_prob: float = 0.05
    cart_prob_interest: float = 0.15
    purchase_prob: float = 0.4
    # time: lognormal gaps, in seconds within a session and hours between sessions, and funnel delays
    new_session_prob: float = 0.15
    within_session_gap_median_s: float = 45.0
    within_session_gap_sigma: float = 1.0
    between_session_gap_median_h: float = 30.0
    between_session_gap_sigma: float = 1.4
    funnel_delay_median_s: float = 30.0
    funnel_delay_sigma: float = 0.8
    start_timestamp: float = 1704067200.0  # 2024-01-01T00:00:00Z
    start_spread_days: float = 120.0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field, its value and the allowed range (fields may be set late)."""
        problems = [
            f"{f.name}={getattr(self, f.name)!r} must be in [0, 1]"
            for f in fields(self)
            if f.name.endswith("_prob") and not 0.0 <= getattr(self, f.name) <= 1.0
        ]
        if self.n_users < 1 or self.n_categories < 1:
            problems.append(f"n_users={self.n_users} and n_categories={self.n_categories} must be at least 1")
        if self.n_items < 2 * self.n_categories:
            problems.append(f"n_items={self.n_items} must be at least twice n_categories={self.n_categories}")
        if not 1 <= self.min_favourite_categories <= self.max_favourite_categories <= self.n_categories:
            problems.append("need 1 <= min_favourite_categories <= max_favourite_categories <= n_categories")
        if not 1 <= self.min_steps_per_user <= self.max_steps_per_user:
            problems.append(
                f"need 1 <= min_steps_per_user ({self.min_steps_per_user}) <= max_steps_per_user "
                f"({self.max_steps_per_user})"
            )
        if self.revisit_prob + max(self.transition_prob, self.transition_prob_after_purchase) > 1.0:
            problems.append("revisit_prob + transition_prob(_after_purchase) must not exceed 1")
        if self.related_per_item < 1 or self.revisit_window < 2:
            problems.append("related_per_item must be at least 1 and revisit_window at least 2")
        if problems:
            raise ValueError("invalid SyntheticShopConfig: " + "; ".join(problems))


@dataclass
class _Catalogue:
    """Items sorted by (category, popularity rank), so each category is one contiguous index range."""

    category: np.ndarray  # (n_items,) category of each item
    start: np.ndarray  # (n_categories + 1,) first item of each category
    view_cdf: np.ndarray  # category + within-category cumulative popularity, for _sample_in_category
    category_cdf: np.ndarray  # cumulative category popularity (sum of its item weights)
    related: np.ndarray  # (n_items, related_per_item) directed related items, most likely first
    related_cdf: np.ndarray  # (related_per_item,) which related slot the next view takes


def _category_cdf(category: np.ndarray, weight: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per-category cumulative shares offset by the category index: one sorted array for every category."""
    cum = np.cumsum(weight)
    end = cum[start[1:] - 1]  # running total at the end of each category
    before = np.concatenate([[0.0], end[:-1]])
    cdf = category + (cum - before[category]) / (end - before)[category]
    cdf[start[1:] - 1] = np.arange(1, len(start))  # exact category ends, so no draw spills into the next one
    return cdf


def _sample_in_category(cat: _Catalogue, cdf: np.ndarray, category: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One item per row from ``category`` by popularity: ``searchsorted(cdf, category + u)``, no loop."""
    index = np.searchsorted(cdf, category + u, side="right")
    return np.minimum(index, cat.start[category + 1] - 1).astype(np.int32)


def _build_catalogue(config: SyntheticShopConfig, rng: np.random.Generator) -> _Catalogue:
    """Zipf ranks spread over categories of uneven size; related items mostly from the same category."""
    n, c, k = config.n_items, config.n_categories, config.related_per_item
    sizes = 2 + rng.multinomial(n - 2 * c, rng.dirichlet(np.full(c, 2.0)))
    rank_category = rng.permutation(np.repeat(np.arange(c), sizes))  # category of popularity rank r
    order = np.lexsort((np.arange(n), rank_category))
    category = rank_category[order]
    weight = (order + 1.0) ** -config.zipf_exponent
    start = np.concatenate([[0], np.cumsum(sizes)])
    view_cdf = _category_cdf(category, weight, start)
    category_weight = np.bincount(category, weights=weight, minlength=c)
    category_cdf = np.cumsum(category_weight) / category_weight.sum()
    cat = _Catalogue(category, start, view_cdf, category_cdf, np.empty((0, k), np.int32), np.empty(0))
    related_cdf = _category_cdf(category, weight**config.related_popularity, start)
    same = rng.random((n, k)) < config.related_same_category_prob
    other = _sample_category(cat, rng.random((n, k)))
    related_category = np.where(same, category[:, None], other)
    related = _sample_in_category(cat, related_cdf, related_category, rng.random((n, k)))
    own = np.arange(n)[:, None]
    size = sizes[category][:, None]
    neighbour = start[category][:, None] + (own - start[category][:, None] + 1) % size
    cat.related = np.where(related == own, neighbour, related).astype(np.int32)  # no self-transitions
    slot_weight = 1.0 / np.arange(1, k + 1)
    cat.related_cdf = np.cumsum(slot_weight) / slot_weight.sum()
    return cat


def _sample_category(cat: _Catalogue, u: np.ndarray) -> np.ndarray:
    """Categories by overall popularity (exploration, cross-category complements)."""
    return np.minimum(np.searchsorted(cat.category_cdf, u, side="right"), len(cat.category_cdf) - 1)


@dataclass
class _Users:
    steps: np.ndarray  # (n_users,) views in the history
    favourites: np.ndarray  # (n_users, max_favourite_categories) category ids
    share_cdf: np.ndarray  # (n_users, max_favourite_categories) cumulative interest shares
    start: np.ndarray  # (n_users,) time of the first event


def _draw_users(config: SyntheticShopConfig, cat: _Catalogue, rng: np.random.Generator) -> _Users:
    """History lengths, sparse category interests (Gumbel top-k without replacement) and start times."""
    n, f = config.n_users, config.max_favourite_categories
    mu = math.log(config.mean_steps_per_user) - config.steps_sigma**2 / 2
    steps = np.rint(rng.lognormal(mu, config.steps_sigma, n))
    steps = np.clip(steps, config.min_steps_per_user, config.max_steps_per_user).astype(np.int64)
    log_weight = np.log(np.diff(np.concatenate([[0.0], cat.category_cdf])))
    favourites = np.empty((n, f), dtype=np.int32)
    for lo in range(0, n, 1 << 16):  # chunks bound memory for many users x many categories
        keys = log_weight + rng.gumbel(size=(min(n - lo, 1 << 16), len(log_weight)))
        top = np.argpartition(-keys, f - 1, axis=1)[:, :f]
        by_key = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)  # strongest favourite first
        favourites[lo : lo + len(top)] = np.take_along_axis(top, by_key, axis=1)
    n_fav = rng.integers(config.min_favourite_categories, f + 1, size=n)
    share = rng.gamma(config.interest_concentration, size=(n, f)) * (np.arange(f) < n_fav[:, None])
    share_cdf = np.cumsum(share, axis=1) / share.sum(axis=1, keepdims=True)
    favourites = np.where(np.arange(f) < n_fav[:, None], favourites, favourites[:, :1])  # unused slots: first
    start = config.start_timestamp + np.floor(rng.random(n) * config.start_spread_days * 86400.0)
    return _Users(steps, favourites, share_cdf, start)


@dataclass
class _Events:
    """Events in simulation order: ``position`` is the user's slot, ``local`` the event's index in it."""

    position: list[np.ndarray]
    local: list[np.ndarray]
    item: list[np.ndarray]
    action: list[np.ndarray]
    time: list[np.ndarray]

    def emit(self, pos: np.ndarray, idx: np.ndarray, item: np.ndarray, action: int, time: np.ndarray) -> None:
        self.position.append(pos.astype(np.int32))
        self.local.append(idx)
        self.item.append(item)
        self.action.append(np.full(len(item), action, dtype=np.int8))
        self.time.append(time)


def _gap(z: np.ndarray, median: float, sigma: float) -> np.ndarray:
    """Lognormal gap in whole seconds, at least one, so a user's timestamps strictly increase."""
    return np.ceil(median * np.exp(sigma * z))


class _Simulation:
    """State of every user, kept in order of decreasing history length so the active users are a prefix."""

    def __init__(self, config: SyntheticShopConfig, cat: _Catalogue, users: _Users) -> None:
        self.config, self.cat = config, cat
        self.order = np.argsort(-users.steps, kind="stable")  # position -> user index
        self.neg_steps = -users.steps[self.order]
        self.favourites, self.share_cdf = users.favourites[self.order], users.share_cdf[self.order]
        self.clock = users.start[self.order]
        n = len(self.order)
        self.current = np.zeros(n, dtype=np.int32)
        self.session_category = np.zeros(n, dtype=np.int32)
        self.bought = np.zeros(n, dtype=bool)
        self.recent = np.zeros((n, config.revisit_window), dtype=np.int32)
        self.count = np.zeros(n, dtype=np.int64)
        self.events = _Events([], [], [], [], [])

    def interest(self, m: int, u: np.ndarray) -> np.ndarray:
        """A category from each active user's interest shares."""
        slot = np.minimum((self.share_cdf[:m] < u[:, None]).sum(axis=1), self.share_cdf.shape[1] - 1)
        return np.take_along_axis(self.favourites[:m], slot[:, None], axis=1)[:, 0]

    def next_items(self, t: int, m: int, new_session: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The step-t view of the first m users: a revisit, a related item of the current one, or a draw."""
        c, cat = self.config, self.cat
        self.session_category[:m] = np.where(
            new_session,
            np.where(u[:, 1] < c.explore_prob, _sample_category(cat, u[:, 2]), self.interest(m, u[:, 2])),
            self.session_category[:m],
        )
        explore = u[:, 3] < c.explore_prob
        focus = np.where(u[:, 4] < c.session_focus_prob, self.session_category[:m], self.interest(m, u[:, 4]))
        category = np.where(explore, _sample_category(cat, u[:, 4]), focus)
        drawn = _sample_in_category(cat, cat.view_cdf, category, u[:, 5])
        revisit_p = c.revisit_prob if t >= 2 else 0.0
        revisit = u[:, 6] < revisit_p
        transition_p = np.where(self.bought[:m], c.transition_prob_after_purchase, c.transition_prob)
        transition = ~revisit & ~new_session & (u[:, 6] < revisit_p + transition_p)
        slot = np.minimum(np.searchsorted(cat.related_cdf, u[:, 7], side="right"), len(cat.related_cdf) - 1)
        related = cat.related[self.current[:m], slot]
        # an item seen 2..window steps ago (never the current one); only used from step 2 on
        back = 2 + np.floor(u[:, 7] * (min(t, c.revisit_window) - 1)).astype(np.int64)
        seen = self.recent[np.arange(m), (t - back) % c.revisit_window]
        return np.where(revisit, seen, np.where(transition, related, drawn))

    def step(self, t: int, rng: np.random.Generator) -> None:
        """Simulate one view (and its cart and purchase) for every user with more than t steps."""
        c, m = self.config, int(np.searchsorted(self.neg_steps, -t, side="left"))
        u, z = rng.random((m, 10)), rng.standard_normal((m, 3))
        new_session = (u[:, 0] < c.new_session_prob) | (t == 0)
        item = self.next_items(t, m, new_session, u)
        liked = (self.favourites[:m] == self.cat.category[item][:, None]).any(axis=1)
        cart = u[:, 8] < np.where(liked, c.cart_prob_interest, c.cart_prob)
        buy = cart & (u[:, 9] < c.purchase_prob)
        within = _gap(z[:, 0], c.within_session_gap_median_s, c.within_session_gap_sigma)
        between = _gap(z[:, 0], c.between_session_gap_median_h * 3600.0, c.between_session_gap_sigma)
        view_time = self.clock[:m] + (0.0 if t == 0 else np.where(new_session, between, within))
        cart_time = view_time + _gap(z[:, 1], c.funnel_delay_median_s, c.funnel_delay_sigma)
        buy_time = cart_time + _gap(z[:, 2], c.funnel_delay_median_s, c.funnel_delay_sigma)
        position, local = np.arange(m), self.count[:m].copy()
        self.events.emit(position, local, item, 0, view_time)
        self.events.emit(position[cart], local[cart] + 1, item[cart], 1, cart_time[cart])
        self.events.emit(position[buy], local[buy] + 2, item[buy], 2, buy_time[buy])
        self.clock[:m] = np.where(buy, buy_time, np.where(cart, cart_time, view_time))
        self.count[:m] += 1 + cart + buy
        self.current[:m], self.bought[:m] = item, buy
        self.recent[:m, t % c.revisit_window] = item

    def run(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """All steps; returns (user, item, action, time, events per user) sorted by user then time."""
        for t in range(int(-self.neg_steps[0])):
            self.step(t, rng)
        per_user = np.zeros(len(self.order), dtype=np.int64)
        per_user[self.order] = self.count
        offset = np.cumsum(per_user) - per_user
        ev = self.events
        position = np.concatenate(ev.position)
        dest = offset[self.order[position]] + np.concatenate(ev.local)  # scatter instead of a 10M-row sort
        columns = []
        for parts, dtype in ((ev.item, np.int32), (ev.action, np.int8), (ev.time, np.float64)):
            out = np.empty(len(dest), dtype=dtype)
            out[dest] = np.concatenate(parts)
            columns.append(out)
        user = np.repeat(np.arange(len(per_user), dtype=np.int32), per_user)
        return (user, *columns, per_user)


def _names(prefix: str, n: int, width: int) -> pl.Series:
    """Zero-padded ids ("u000123") so that string order equals numeric order."""
    digits = pl.Series(prefix, np.arange(n)).cast(pl.String).str.zfill(max(width, len(str(n - 1))))
    return pl.select(pl.lit(prefix) + digits).to_series().alias(prefix)


def generate_shop_log(config: SyntheticShopConfig | None = None) -> pl.DataFrame:
    """The synthetic shop log as a canonical events table, sorted by user then time, plus ``category``.

    Columns: ``user_id``, ``item_id``, ``action`` ("view", "cart", "purchase"), ``timestamp`` (unix seconds,
    strictly increasing within a user), ``event_index`` (row number), ``category``. The same config always
    gives the identical frame: the catalogue, the users and the simulation each draw from their own seeded
    stream, so a change to one part does not reshuffle the others.
    """
    config = config or SyntheticShopConfig()
    config.validate()
    streams = [np.random.default_rng([config.seed, part]) for part in range(3)]
    cat = _build_catalogue(config, streams[0])
    users = _draw_users(config, cat, streams[1])
    user, item, action, time, _ = _Simulation(config, cat, users).run(streams[2])
    item_names = _names("i", config.n_items, 5)[streams[0].permutation(config.n_items)]  # ids hide the rank
    return pl.DataFrame(
        {
            "user_id": _names("u", config.n_users, 6).gather(user),
            "item_id": item_names.gather(item),
            "action": pl.Series(ACTIONS).gather(action),
            "timestamp": time,
            "event_index": np.arange(len(user), dtype=np.int64),
            "category": _names("c", config.n_categories, 2).gather(cat.category[item]),
        }
    )


def estimate_events(config: SyntheticShopConfig | None = None) -> int:
    """Approximate event count (within a few percent) without generating, to size a log for a target count.

    Steps per user are a clipped lognormal, whose mean has a closed form; each view adds a cart with a rate
    between ``cart_prob`` and ``cart_prob_interest`` (most views fall in a favourite category) and a purchase.
    """
    config = config or SyntheticShopConfig()
    s, lo, hi = config.steps_sigma, config.min_steps_per_user, config.max_steps_per_user
    mu = math.log(config.mean_steps_per_user) - s**2 / 2

    def below(x: float, shift: float = 0.0) -> float:
        """P(X < x); with ``shift = s**2`` it gives the partial mean E[X; X < x] / E[X]."""
        return 0.5 * (1.0 + math.erf((math.log(x) - mu - shift) / (s * math.sqrt(2.0))))

    middle = math.exp(mu + s**2 / 2) * (below(hi, s**2) - below(lo, s**2))
    mean = middle + lo * below(lo) + hi * (1 - below(hi))
    cart = 0.8 * config.cart_prob_interest + 0.2 * config.cart_prob
    return round(config.n_users * mean * (1.0 + cart * (1.0 + config.purchase_prob)))
