"""Ratings as actions, shared by the readers of rated datasets (MovieLens, RecBole, Amazon).

``rating_actions="rate"`` gives ``rate_4`` / ``rate_3.5``; ``"like"`` gives ``like`` when the rating is at least
``like_threshold``, else ``dislike``; ``"none"`` gives every event the default action.
"""

from __future__ import annotations

import math

import polars as pl

from bertrec.data.schema import DEFAULT_ACTION, EventDataError

RATING_ACTIONS = ("rate", "like", "none")


def _check_rating_options(rating_actions: str, like_threshold: float) -> None:
    if rating_actions not in RATING_ACTIONS:
        raise EventDataError(f"rating_actions must be one of {list(RATING_ACTIONS)}, got {rating_actions!r}")
    if isinstance(like_threshold, bool) or not isinstance(like_threshold, (int, float)) or math.isnan(like_threshold):
        raise EventDataError(f"like_threshold must be a number (e.g. 4.0), got {like_threshold!r}")


def _rating_actions(rating: pl.Series, mode: str, threshold: float) -> pl.Series:
    """Actions from ratings: ``rate_<value>`` ("rate": rate_4, rate_3.5), like/dislike ("like"), or one action."""
    if mode == "none":
        return pl.repeat(DEFAULT_ACTION, rating.len(), dtype=pl.String, eager=True).alias("action")
    if mode == "like":
        liked = pl.when(rating >= threshold).then(pl.lit("like")).otherwise(pl.lit("dislike"))
        return pl.select(liked.alias("action")).to_series()
    whole = rating.round(0)
    text = pl.select(
        pl.when(rating == whole).then(whole.cast(pl.Int64).cast(pl.String)).otherwise(rating.cast(pl.String))
    ).to_series()
    return ("rate_" + text).alias("action")
