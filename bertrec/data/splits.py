"""Train/validation/test splits over sequences, with a leakage check that runs on every split.

Training data is a sequences frame (see ``sequences.py``). Evaluation data is an *examples* frame: one row per
user with the history the model may see (the same list columns as a sequence) and the target event in
``target_item_id``, ``target_action``, ``target_timestamp``, ``target_event_index``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from bertrec.data.sequences import SEQUENCE_LIST_COLUMNS

TARGET_COLUMNS = tuple(f"target_{c}" for c in SEQUENCE_LIST_COLUMNS)


class LeakageError(AssertionError):
    """An evaluation target is visible in data the model sees before it is asked to predict it."""


@dataclass
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    stats: dict[str, int | float | str] = field(default_factory=dict)


def _examples(sequences: pl.DataFrame, history_end: pl.Expr) -> pl.DataFrame:
    """Rows whose target is the event at ``history_end`` and whose history is every event before it."""
    lists = [pl.col(c).list.head(history_end) for c in SEQUENCE_LIST_COLUMNS]
    targets = [pl.col(c).list.get(history_end).alias(f"target_{c}") for c in SEQUENCE_LIST_COLUMNS]
    return sequences.select(["user_id", *lists, *targets])


def leave_one_out(sequences: pl.DataFrame, target_action: str | None = None) -> Split:
    """Last event of each user -> test, second-last -> validation, the rest -> training.

    Users with fewer than 3 events cannot be validated and tested; their whole sequence goes to training (it
    holds no evaluation target, so nothing leaks) and the count is reported.

    With ``target_action`` (e.g. "purchase") only events of that action are targets: each user's last such
    event is the test target, the one before it the validation target, each with every earlier event as its
    history. This is the "next purchase" protocol; users with fewer than two target events (or none before
    them) train only. Training keeps each evaluated user's events up to their target-action event before the
    validation target (see ``action_leave_one_out`` for why).
    """
    if target_action is not None:
        split = action_leave_one_out(sequences, target_action)
        if split.valid.height == 0:
            raise ValueError(
                f"target action {target_action!r}: no user has two {target_action!r} events with history before "
                f"them; check the action name (actions in this log: "
                f"{sorted(sequences['action'].explode().unique().to_list())[:10]})"
            )
        return split
    n = pl.col("item_id").list.len()
    evaluable = sequences.filter(n >= 3)
    train_only = sequences.filter(n < 3)
    train = pl.concat([evaluable.with_columns([pl.col(c).list.head(n - 2) for c in SEQUENCE_LIST_COLUMNS]), train_only])
    split = Split(
        train=train,
        valid=_examples(evaluable, n - 2),
        test=_examples(evaluable, n - 1),
        stats={
            "protocol": "leave_one_out",
            "evaluated_users": evaluable.height,
            "train_only_users": train_only.height,
        },
    )
    check_no_leakage(split)
    return split


def action_leave_one_out(sequences: pl.DataFrame, action: str) -> Split:
    """``leave_one_out`` with a target action, which may leave no user evaluable (a part of a log may).

    A test history ends with the events since the validation target (a median of 7 on Tmall), which no model
    trained on. If training kept every event before the validation target, a validation history would be
    training data to its last event, and the browsing that precedes a purchase (usually of the item bought)
    would be memorised: validation then rewards memorising users rather than reading their recent events, and
    selects models that fall apart on test (on Tmall a time/action model scored 0.53 on validation, 0.23 on
    test). So training stops at the target-action event before the validation target: validation histories
    end, as test histories do, with events no model trained on. Those events are counted in
    ``stats["held_out_events"]``; users with no earlier target-action event add no training events.
    """
    positions = pl.col("action").list.eval(pl.arg_where(pl.element() == action))
    marked = sequences.with_columns(_targets=positions)
    valid_at, test_at = pl.col("_targets").list.get(-2, null_on_oob=True), pl.col("_targets").list.get(-1)
    train_end = (pl.col("_targets").list.get(-3, null_on_oob=True) + 1).fill_null(0)
    evaluable_rows = (pl.col("_targets").list.len() >= 2) & (valid_at >= 1)
    evaluable = marked.filter(evaluable_rows).with_columns(_train_end=train_end)
    train_only = marked.filter(~evaluable_rows).drop("_targets")
    head = evaluable.with_columns([pl.col(c).list.head(pl.col("_train_end")) for c in SEQUENCE_LIST_COLUMNS])
    head = head.filter(pl.col("_train_end") > 0).drop("_targets", "_train_end")
    held_out = evaluable.select((valid_at - pl.col("_train_end")).sum()).item()
    evaluable = evaluable.drop("_train_end")
    split = Split(
        train=pl.concat([head, train_only]),
        valid=_examples(evaluable, valid_at),
        test=_examples(evaluable, test_at),
        stats={
            "protocol": f"leave_one_out, target action {action}",
            "evaluated_users": evaluable.height,
            "train_only_users": train_only.height,
            "held_out_events": int(held_out),
        },
    )
    check_no_leakage(split)
    return split


def temporal_split(sequences: pl.DataFrame, *, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> Split:
    """Global temporal split: two cut-off times at quantiles of all event times.

    Training sees only events before the validation cut-off. Each user's first event in the validation
    period is a validation target, their first event after the test cut-off a test target; the history is
    every earlier event of that user. Users with no earlier event (new users) are counted, not evaluated.
    """
    if not 0 < valid_fraction < 1 or not 0 < test_fraction < 1 or valid_fraction + test_fraction >= 1:
        raise ValueError(
            f"valid_fraction={valid_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum below 1"
        )
    times = sequences["timestamp"].explode()
    if times.null_count() == times.len():
        raise ValueError("a temporal split needs timestamps, but this log has none; use leave_one_out")
    if times.null_count():  # they sort first, so counting events before a cut-off would pick the wrong targets
        raise ValueError(
            f"a temporal split needs a timestamp for every event, but {times.null_count()} events have none; "
            "drop them first (clean_events does) or use leave_one_out"
        )
    test_start = times.quantile(1 - test_fraction, "nearest")
    valid_start = times.quantile(1 - test_fraction - valid_fraction, "nearest")
    ts = pl.col("timestamp")
    before_valid = ts.list.eval((pl.element() < valid_start).sum()).list.first()
    before_test = ts.list.eval((pl.element() < test_start).sum()).list.first()
    n = pl.col("item_id").list.len()
    counted = sequences.with_columns(before_valid=before_valid, before_test=before_test, n=n)
    train = counted.filter(pl.col("before_valid") > 0).with_columns(
        [pl.col(c).list.head(pl.col("before_valid")) for c in SEQUENCE_LIST_COLUMNS]
    )
    in_valid = pl.col("before_test") > pl.col("before_valid")
    valid = _examples(counted.filter(in_valid & (pl.col("before_valid") > 0)), pl.col("before_valid"))
    test_rows = counted.filter((pl.col("n") > pl.col("before_test")) & (pl.col("before_test") > 0))
    test = _examples(test_rows, pl.col("before_test"))
    split = Split(
        train=train.select(sequences.columns),
        valid=valid,
        test=test,
        stats={
            "protocol": "temporal",
            "valid_start": float(valid_start),
            "test_start": float(test_start),
            "new_users_skipped_valid": counted.filter(in_valid & (pl.col("before_valid") == 0)).height,
            "new_users_skipped_test": counted.filter(
                (pl.col("n") > pl.col("before_test")) & (pl.col("before_test") == 0)
            ).height,
        },
    )
    check_no_leakage(split)
    return split


def fold_validation_into_training(split: Split) -> Split:
    """The final fit: each validated user trains on their validation history plus its target, which in
    leave-one-out is everything before the test target, so the model also learns the most recent event
    before the test, as a deployed model retrained on all data would. Users without a validation example keep
    their training sequence. Nothing is left to validate on (``valid`` is empty): the configuration and the
    epoch count must come from an earlier run that validated.
    """
    valid = split.valid
    folded = valid.select(
        "user_id", *[pl.concat_list(pl.col(c), pl.col(f"target_{c}")).alias(c) for c in SEQUENCE_LIST_COLUMNS]
    )
    others = split.train.join(valid.select("user_id"), on="user_id", how="anti").select(folded.columns)
    stats = {**split.stats, "validation_in_training": True, "validation_targets_trained": valid.height}
    result = Split(train=pl.concat([folded, others]), valid=valid.head(0), test=split.test, stats=stats)
    check_no_leakage(result)
    return result


def check_no_leakage(split: Split) -> None:
    """Raise ``LeakageError`` if a test target event is visible in training or validation, or a validation
    target in training, or any target in its own history. Events are identified by ``event_index`` (not item
    id: users legitimately revisit items)."""

    def events_of(frame: pl.DataFrame, column: str) -> pl.DataFrame:
        values = frame[column].explode() if frame[column].dtype == pl.List else frame[column]
        return values.drop_nulls().alias("event_index").to_frame()

    train_events = events_of(split.train, "event_index")
    valid_visible = pl.concat(
        [train_events, events_of(split.valid, "event_index"), events_of(split.valid, "target_event_index")]
    )
    for name, examples, visible in (
        ("validation", split.valid, train_events),
        ("test", split.test, valid_visible),
    ):
        # the few targets are hashed and the many visible events probed: a semi join would hash the many
        targets = events_of(examples, "target_event_index")["event_index"]
        seen = visible.filter(pl.col("event_index").is_in(targets.implode()))["event_index"]
        leaked = targets.filter(targets.is_in(seen.implode())).to_frame()
        if leaked.height:
            raise LeakageError(
                f"{leaked.height} {name} target events (event_index e.g. {leaked['event_index'].head(5).to_list()}) "
                "are visible in data the model sees earlier; the split is leaky and its metrics would be inflated"
            )
        check_targets_not_in_history(examples, name)


def check_targets_not_in_history(examples: pl.DataFrame, part: str | None = None) -> None:
    """Raise ``LeakageError`` if an example's target event (by ``event_index``) is among its own input events.

    Runs on every split this module makes and on every examples frame evaluation is given, since a frame built
    or edited by hand can carry the classic off-by-one. Revisits of the same item are legitimate and pass.
    """
    if "target_event_index" not in examples.columns or "event_index" not in examples.columns:
        return
    leaky = examples.filter(pl.col("event_index").list.contains(pl.col("target_event_index")))
    if leaky.height:
        what = f"{part} examples" if part else "examples"
        raise LeakageError(
            f"{leaky.height} of {examples.height} {what} have their target event in their own input history "
            f"(user {leaky['user_id'][0]!r}, event_index {leaky['target_event_index'][0]}): a target visible in "
            "its own history inflates the metrics. Build examples with bertrec.data.splits (leave_one_out / "
            "temporal_split)."
        )
