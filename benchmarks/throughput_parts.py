"""The measurements behind ``throughput.py``: each returns a plain dict of figures, nothing is printed here.

Every measurement runs the library's own code path (reader, cleaning, sequences, split, tokenizer, the training
step of ``bertrec.training``, ``evaluate_model``, ``Recommender``), on synthetic data made here or on a public
log read through ``quality_protocol`` (ml-100k, the split every quality row uses).
"""

from __future__ import annotations

import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import psutil
import pyarrow as pa
import torch

from bertrec.baselines import item_counts
from bertrec.collators import TokenLayout, pad_sequences
from bertrec.data.cleaning import CleaningConfig, clean_events
from bertrec.data.readers import read_events
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import leave_one_out
from bertrec.data.streaming import prepare_in_buckets, windows_column
from bertrec.evaluation import evaluate_model
from bertrec.losses import ItemLoss
from bertrec.modeling import build_model, objective_for
from bertrec.tokenization import DEFAULT_TIME_BOUNDARIES, EventTokenizer, EventTokenizerSpec
from bertrec.training import Objective, TrainingArguments, epoch_batches

ACTIONS = np.array(["view", "cart", "fav", "buy"])
CLEANING = {"min_user_events": 5, "min_item_events": 5}  # the "default cleaning" of the data path figure
TRAINING_BATCH = 128  # sequences per training step in every training measurement


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ``getrusage``: Linux keeps ``ru_maxrss`` across
    fork and exec, so a fresh child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_log(path: Path, events: int, seed: int = 0, users: int | None = None, items: int | None = None) -> Path:
    """A shop-like log as Parquet with integer ids: ``users`` (default: 50 events per user on average), a skewed
    catalogue of ``items`` (default ``events // 20``; cubed uniform draws), 4 actions, second timestamps over one
    year, 1% duplicates."""
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    items = items or max(events // 20, 1000)
    user = rng.integers(0, users or max(events // 50, 1), events)
    item = (items * rng.random(events) ** 3).astype(np.int64)
    action = ACTIONS[rng.choice(4, events, p=[0.85, 0.07, 0.05, 0.03])]
    stamp = rng.integers(1_700_000_000, 1_700_000_000 + 365 * 86400, events)
    duplicate = rng.random(events) < 0.01
    previous = np.maximum(np.arange(events) - 1, 0)
    for column in (user, item, stamp):
        column[duplicate] = column[previous[duplicate]]
    action[duplicate] = action[previous[duplicate]]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame({"user_id": user, "item_id": item, "action": action, "timestamp": stamp})
    frame.write_parquet(path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return path


def data_path(path: Path, layout: str = "time action item", max_events: int = 200) -> dict:
    """Seconds per stage from Parquet to training windows, events/s end to end, and the process's peak RSS
    (run it in a fresh process). k-core is timed separately and not part of the end-to-end figure."""
    stages: dict[str, float] = {}
    peaks: dict[str, float] = {}  # the process's peak RSS so far, after each stage
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = round(now - clock, 3)
        peaks[name] = round(peak_rss_mb())
        clock = now

    # each stage's input is released once the next exists, as in the recipes' prepare_data
    events = read_events(path, columns={"action": "action", "timestamp": "timestamp"})
    rows = events.height
    stage("read")
    cleaned, report = clean_events(events, CleaningConfig(**CLEANING))
    del events
    stage("clean")
    sequences = build_sequences(cleaned)
    del cleaned
    stage("sequences")
    split = leave_one_out(sequences)
    del sequences
    stage("split")
    tokenizer = EventTokenizer.build(split.train, layout=layout, max_events=max_events)
    stage("tokenizer")
    windows = tokenizer.encode_training_windows(split.train, min_events=2)
    stage("encode")
    dataset = windows_dataset(windows)
    stage("datasets")
    rss = peak_rss_mb()
    del windows, dataset, split
    # k-core is timed on a fresh read: keeping the cleaned frame alive for it would raise the peak measured above
    events = read_events(path, columns={"action": "action", "timestamp": "timestamp"})
    cleaned, _ = clean_events(events, CleaningConfig(**CLEANING))
    del events
    start = time.perf_counter()
    _, core_report = clean_events(cleaned, CleaningConfig(min_user_events=5, min_item_events=5, k_core=True))
    k_core_seconds = time.perf_counter() - start
    total = sum(stages.values())
    return {
        "events": rows,
        "events_after_cleaning": report.output_rows,
        "users": report.users_after,
        "items": report.items_after,
        "stages_seconds": stages,
        "peak_rss_mb_after": peaks,
        "seconds": round(total, 2),
        "events_per_second": round(rows / total),
        "peak_rss_mb": round(rss),
        "k_core_seconds": round(k_core_seconds, 2),
        "k_core_rounds": core_report.k_core_iterations,
    }


def bucketed_data_path(path: Path, events_per_bucket: int, layout: str = "time action item", max_events: int = 200):
    """The larger-than-memory path (``prepare_in_buckets``) on the same log and cleaning as ``data_path``:
    seconds per pass, events/s and the process's peak RSS (run it in a fresh process)."""
    output = path.parent / f"bucketed-{path.stem}"
    start = time.perf_counter()
    result = prepare_in_buckets(
        path,
        output,
        cleaning=CleaningConfig(**CLEANING),
        columns={"action": "action", "timestamp": "timestamp"},
        layout=layout,
        max_events=max_events,
        events_per_bucket=events_per_bucket,
    )
    seconds = time.perf_counter() - start
    windows = result.train_windows()
    return {
        "events": result.report.input_rows,
        "events_after_cleaning": result.report.output_rows,
        "events_per_bucket": events_per_bucket,
        "buckets": result.num_buckets,
        "largest_bucket_events": result.largest_bucket_events,
        "train_windows": len(windows),
        "stages_seconds": result.stage_seconds,
        "seconds": round(seconds, 2),
        "events_per_second": round(result.report.input_rows / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def windows_dataset(windows: list[np.ndarray]):
    """The training windows as a ``datasets.Dataset`` (one ``input_ids`` list per row), built zero-copy from
    one flat Arrow array: what a multi-worker or memory-mapped training input would be made from."""
    return datasets.Dataset(pa.table({"input_ids": windows_column(windows)}))


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """The machine's practical float32 arithmetic limit with the current torch threads (square matmuls)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def training_step(
    windows: list[np.ndarray], tokenizer: EventTokenizer, *, model_type: str, hidden_size: int, num_layers: int
):
    """A fresh model and the training loop's step on it (pad, label, forward, backward, clip, AdamW), with the
    length-grouped batches of one epoch: ``(model, batches, step)``, ``step(rows) -> (input_ids, mask, labels)``."""
    model = build_model(
        model_type=model_type,
        vocab_size=tokenizer.vocab_size,
        max_positions=tokenizer.spec.max_events * tokenizer.spec.positions_per_event,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=max(hidden_size // 64, 2),
        dropout=0.2,
    )
    loss_module = ItemLoss(model, item_offset=tokenizer.item_offset, num_items=tokenizer.num_items)
    optimizer = torch.optim.AdamW(loss_module.parameters(), lr=1e-3)
    objective = Objective(objective_for(model_type), TokenLayout.from_tokenizer(tokenizer))
    lengths = np.array([len(w) for w in windows])
    # batched as the recipe's default batches them
    batches = epoch_batches(
        lengths, TRAINING_BATCH, seed=0, epoch=0, rank=0, world=1, group_by_length=TrainingArguments.group_by_length
    )
    generator = torch.Generator().manual_seed(0)

    def step(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = pad_sequences([windows[i] for i in rows], tokenizer.pad_id)
        noise = objective.noise(rows, lengths, seed=0, epoch=0)
        input_ids, labels = objective.inputs_and_labels(batch, noise)
        loss_module(input_ids, batch["attention_mask"], labels, generator).backward()
        torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return input_ids, batch["attention_mask"], labels

    return model, batches, step


def training_step_rate(
    windows: list[np.ndarray],
    tokenizer: EventTokenizer,
    *,
    model_type: str,
    hidden_size: int,
    num_layers: int,
    steps: int = 20,
    warmup: int = 3,
) -> dict:
    """Events and tokens per second of the training step over the first ``steps`` batches of an epoch (batches
    of ``TRAINING_BATCH``, grouped by length) after ``warmup`` batches."""
    model, batches, step = training_step(
        windows, tokenizer, model_type=model_type, hidden_size=hidden_size, num_layers=num_layers
    )
    tokens = real = labelled = 0
    times = []
    for index, rows in enumerate(batches[: warmup + steps]):
        start = time.perf_counter()
        input_ids, attention_mask, labels = step(rows)
        if index >= warmup:
            times.append(time.perf_counter() - start)
            tokens += input_ids.numel()
            real += int(attention_mask.sum())
            labelled += int((labels != -100).sum())
    seconds = sum(times)
    epoch_steps = len(batches)
    params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    # forward + backward ~ 6 FLOPs per weight per token for the transformer, plus the output layer at labelled
    # positions (full softmax over the catalogue) and attention scores (4 * seq * hidden per token per layer)
    seq = tokens / (len(times) * TRAINING_BATCH)
    flops = 6 * (params - embedding) * real + 6 * hidden_size * tokenizer.num_items * labelled
    flops += 6 * 2 * seq * hidden_size * num_layers * real
    return {
        "model_type": model_type,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "parameters": params,
        "batch_size": TRAINING_BATCH,
        "steps_timed": len(times),
        "median_step_seconds": round(statistics.median(times), 4),
        "events_per_second": round(real / seconds),
        "supervised_events_per_second": round(labelled / seconds),
        "tokens_per_second": round(tokens / seconds),
        "padding_share": round(1 - real / tokens, 3),
        "epoch_seconds_estimate": round(epoch_steps * seconds / len(times), 1),
        "achieved_gflops": round(flops / seconds / 1e9, 2),
    }


def random_catalogue_model(num_items: int, max_events: int = 50, hidden_size: int = 64, num_layers: int = 2):
    """An untrained 64-dim GPT-2 and an ``item`` tokenizer over ``num_items`` synthetic item ids: timing needs
    the shapes, not trained weights."""
    spec = EventTokenizerSpec(
        layout="item",
        time_boundaries=list(DEFAULT_TIME_BOUNDARIES),
        actions=["view"],
        items=[f"i{k}" for k in range(num_items)],
        max_events=max_events,
    )
    tokenizer = EventTokenizer(spec)
    model = build_model(
        model_type="gpt2",
        vocab_size=tokenizer.vocab_size,
        max_positions=max_events,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=0.0,
    )
    return model.eval(), tokenizer


def random_examples(num_items: int, users: int, history: int, seed: int = 0) -> pl.DataFrame:
    """Leave-one-out test examples of ``users`` random histories of ``history + 2`` events."""
    rng = np.random.default_rng(seed)
    n = users * (history + 2)
    events = pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(users), history + 2).astype(str),
            "item_id": np.char.add("i", rng.integers(0, num_items, n).astype(str)),
            "action": np.full(n, "view"),
            "timestamp": np.arange(n, dtype=np.float64),
            "event_index": np.arange(n, dtype=np.int64),
        }
    )
    return leave_one_out(build_sequences(events)).test


def evaluation_rate(num_items: int, users: int = 2048, history: int = 50, batch_size: int = 512) -> dict:
    """Users per second of full-catalogue evaluation (every item scored, seen items excluded, ranks + top-50)."""
    model, tokenizer = random_catalogue_model(num_items, max_events=history)
    examples = random_examples(num_items, users, history)
    evaluate_model(model, tokenizer, examples[:64], ks=(10, 50), exclude_seen=True)  # warm-up
    start = time.perf_counter()
    metrics = evaluate_model(model, tokenizer, examples, ks=(10, 50), exclude_seen=True, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return {
        "items": num_items,
        "users": metrics["users"],
        "seconds": round(seconds, 2),
        "users_per_second": round(metrics["users"] / seconds, 1),
    }


def recommend_latency(num_items: int = 10_000, history: int = 50, calls: int = 200, batch: int = 256) -> dict:
    """``Recommender.recommend`` latency for one raw history (p50/p99) and ``recommend_batch`` throughput."""
    from bertrec.recommend import Recommender

    model, tokenizer = random_catalogue_model(num_items, max_events=history)
    recommender = Recommender(model, tokenizer)
    rng = np.random.default_rng(0)
    histories = [
        [(f"i{item}", "view", float(t)) for t, item in enumerate(rng.integers(0, num_items, history))]
        for _ in range(batch)
    ]
    for warm in histories[:10]:
        recommender.recommend(warm, k=10)
    latencies = []
    for call in range(calls):
        start = time.perf_counter()
        recommender.recommend(histories[call % batch], k=10)
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    recommender.recommend_batch(histories, k=10)
    batch_seconds = time.perf_counter() - start
    return {
        "items": num_items,
        "history_events": history,
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
        "batch": batch,
        "batch_histories_per_second": round(batch / batch_seconds, 1),
    }


def million_item_run(work: Path, items: int = 1_000_000, users: int = 20_000, per_user: int = 100) -> dict:
    """Train a 64-dim GPT-2 over a catalogue of ``items`` items with sampled softmax for one epoch through the
    library's training loop, validating with full-catalogue ranking; run it in a fresh process for its RSS.

    The log covers every item at least once (so the vocabulary holds them all) and draws the rest from a
    skewed distribution. Full softmax is out of reach here: one batch's logits would be 128 x 99 x 1M floats.
    """
    from accelerate import Accelerator

    from bertrec.training import TrainingArguments, train

    rng = np.random.default_rng(0)
    n = users * per_user
    item = np.concatenate([rng.permutation(items), (items * rng.random(n - items) ** 3).astype(np.int64)])
    events = pl.DataFrame(
        {
            "user_id": rng.integers(0, users, n).astype(str),
            "item_id": np.char.add("i", item.astype(str)),
            "action": np.full(n, "view"),
            "timestamp": np.arange(n, dtype=np.float64),
            "event_index": np.arange(n, dtype=np.int64),
        }
    )
    split = leave_one_out(build_sequences(events))
    tokenizer = EventTokenizer.build(split.train, layout="item", max_events=per_user)
    windows = tokenizer.encode_training_windows(split.train, min_events=2)
    model = build_model(
        model_type="gpt2", vocab_size=tokenizer.vocab_size, max_positions=per_user, hidden_size=64, num_layers=2
    )
    counts = item_counts(tokenizer, split.train) + 1.0
    loss_module = ItemLoss(
        model,
        item_offset=tokenizer.item_offset,
        num_items=tokenizer.num_items,
        item_log_frequency=torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32),
        num_uniform_negatives=4096,
    )
    valid = split.valid[:1000]
    evaluations = []

    def validate() -> dict:
        start = time.perf_counter()
        metrics = evaluate_model(model, tokenizer, valid, ks=(10,), exclude_seen=True)
        evaluations.append(time.perf_counter() - start)
        return metrics

    args = TrainingArguments(
        output_dir=str(work), num_epochs=1, batch_size=TRAINING_BATCH, learning_rate=2e-3, early_stopping_patience=0
    )
    start = time.perf_counter()
    state = train(
        Accelerator(cpu=True),
        loss_module,
        windows,
        Objective("next", TokenLayout.from_tokenizer(tokenizer)),
        validate,
        args,
    )
    seconds = time.perf_counter() - start - sum(evaluations)
    return {
        "items": tokenizer.num_items,
        "training_events": int(sum(len(w) for w in windows)),
        "steps": state["global_step"],
        "train_seconds": round(seconds, 1),
        "step_seconds": round(seconds / state["global_step"], 3),
        "loss": "sampled softmax, 4,096 uniform negatives + in-batch, logQ-corrected",
        "valid_users": valid.height,
        "valid_seconds": round(evaluations[-1], 1),
        "valid_users_per_second": round(valid.height / evaluations[-1], 1),
        "valid_ndcg@10": state["history"][-1]["ndcg@10"],
        "peak_rss_mb": round(peak_rss_mb()),
    }


def profile_step(
    windows: list[np.ndarray], tokenizer: EventTokenizer, model_type: str = "gpt2", steps: int = 5
) -> list:
    """Where a training step's time goes: the top operators by self CPU time over ``steps`` steps (64x2)."""
    from torch.profiler import ProfilerActivity, profile

    _, batches, step = training_step(windows, tokenizer, model_type=model_type, hidden_size=64, num_layers=2)
    step(batches[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for rows in batches[1 : 1 + steps]:
            step(rows)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in events[:8]]


def semantic_catalogue(num_items: int = 1_000_000, users: int = 2048, history: int = 50, seed: int = 0) -> dict:
    """A semantic-ID-only model (``--item_tokens semantic``: no id rows) over ``num_items`` items, beside the id
    model of ``random_catalogue_model``: trainable item parameters, the cost of composing every item row from
    its codes (each training forward pays it), and full-catalogue evaluation of the saved (folded) model.

    Item vectors are random unit vectors in 64 dimensions (timing and sizes need the shapes and a realistic code
    spread, not real text); codes are 3 levels of 64-code residual k-means, as the recipe's defaults."""
    import torch

    from bertrec import item_content
    from bertrec.semantic_ids import residual_codebooks, semantic_id_table

    model, tokenizer = random_catalogue_model(num_items, max_events=history)
    id_rows = tokenizer.num_items * model.config.hidden_size
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(num_items, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = time.perf_counter()
    codes, _ = residual_codebooks(vectors, levels=3, codebook_size=64, seed=seed)
    table, report = semantic_id_table(tokenizer.spec.items, codes, codebook_size=64)
    code_seconds = time.perf_counter() - start
    columns = [c for c in table.columns if c != "item_id"]
    semantic, _ = item_content.with_attributes(tokenizer, table, columns, keep_all=columns, id_rows=False)
    attribute_values = sum(len(values) for values in semantic.spec.attributes.values())
    model = build_model(
        model_type="gpt2", vocab_size=semantic.vocab_size, max_positions=history, hidden_size=64, num_layers=2,
        dropout=0.0,
    )  # fmt: skip
    module = item_content.attach(model, semantic)
    weight = model.get_input_embeddings().parametrizations.weight.original
    with torch.no_grad():
        module(weight)  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            module(weight)
        compose_seconds = (time.perf_counter() - start) / 3
    examples = random_examples(num_items, users, history)
    with item_content.folded(model):
        folded = model.eval()
        evaluate_model(folded, semantic, examples[:64], ks=(10, 50), exclude_seen=True)  # warm-up
        start = time.perf_counter()
        metrics = evaluate_model(folded, semantic, examples, ks=(10, 50), exclude_seen=True, batch_size=512)
        seconds = time.perf_counter() - start
    return {
        "items": num_items,
        "id_item_parameters": id_rows,
        "semantic_item_parameters": attribute_values * 64,
        "semantic_share": round(attribute_values * 64 / id_rows, 6),
        "attribute_values": attribute_values,
        "codes": report,
        "code_seconds": round(code_seconds, 1),
        "compose_seconds": round(compose_seconds, 3),
        "users": metrics["users"],
        "eval_users_per_second": round(metrics["users"] / seconds, 1),
        "id_model": evaluation_rate(num_items, users, history),
    }


class ProcessTreeRss:
    """Peak resident memory of this process and of its descendants by kind (a JVM; Python workers summed),
    sampled four times a second in a thread: a Spark run's memory is mostly in processes this one starts."""

    def __init__(self, interval: float = 0.25, kind=lambda name: "jvm" if "java" in name else "python workers"):
        self.peaks: dict[str, float] = {}
        self._kind = kind  # a descendant's process name -> the kind it is counted under
        self._interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessTreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self._interval):
            sizes = {"this process": me.memory_info().rss}
            for child in me.children(recursive=True):
                try:
                    kind = self._kind(child.name())
                    sizes[kind] = sizes.get(kind, 0) + child.memory_info().rss
                except psutil.Error:  # ended between listing and reading
                    continue
            for kind, size in sizes.items():
                self.peaks[kind] = max(self.peaks.get(kind, 0.0), round(size / 2**20))


def spark_data_path(path: Path, layout: str = "time action item", max_events: int = 200) -> dict:
    """The Spark path (``prepare_on_spark``, local mode on every core) on the same log and cleaning as
    ``data_path``: seconds per stage, events/s and the peak RSS of the driver process, its JVM and its Python
    workers. Spark's start-up is timed apart from the preparation."""
    from bertrec.data.spark_prepare import prepare_on_spark, spark_session

    output = path.parent / f"spark-{path.stem}"
    with ProcessTreeRss() as memory:
        start = time.perf_counter()
        spark = spark_session("local[*]", driver_memory="1536m")
        started = time.perf_counter()
        result = prepare_on_spark(
            path,
            output,
            spark=spark,
            cleaning=CleaningConfig(**CLEANING),
            columns={"action": "action", "timestamp": "timestamp"},
            layout=layout,
            max_events=max_events,
        )
        seconds = time.perf_counter() - started
        spark.stop()
    return {
        "events": result.report.input_rows,
        "events_after_cleaning": result.report.output_rows,
        "train_windows": result.split_stats["train_windows"],
        "spark_start_seconds": round(started - start, 2),
        "stages_seconds": result.stage_seconds,
        "seconds": round(seconds, 2),
        "events_per_second": round(result.report.input_rows / seconds),
        "peak_rss_mb": memory.peaks,
        "output_dir": str(output),
    }


def training_from_folder(folder: Path, seconds: float, threads: int, steps: int | None = None) -> dict:
    """A training process reading a prepared folder (``pretrain.py --prepared_dir``): its peak RSS, and the RSS
    when the training loop starts (split, tokenizer, memory-mapped windows and model loaded). Without ``steps``
    it runs ``seconds`` of its first epoch and is stopped; with ``steps`` it trains that many steps, validates
    and runs its final evaluation with the baselines, so the peak covers a whole run. Sampled softmax (1024
    negatives): a full softmax over a 2.5M-item catalogue would measure the logits."""
    command = [
        sys.executable, "recipes/pretrain.py", "--prepared_dir", str(folder), "--output_dir",
        str(folder.parent / f"train-{folder.name}"), "--model_type", "gpt2", "--hidden_size", "64",
        "--num_layers", "2", "--num_heads", "2", "--num_epochs", "1", "--batch_size", "128",
        "--cpu_threads", str(threads), "--logging_steps", "20", "--repeat_scores", "false",
        "--transition_scores", "false", "--loss", "sampled", "--num_negatives", "1024",
    ]  # fmt: skip
    if steps:
        command += ["--max_steps", str(steps)]
        seconds = float("inf")
    root = Path(__file__).resolve().parents[1]
    started, log, first_step = time.perf_counter(), [], None
    phase, read = PHASES[0], 0
    peaks = dict.fromkeys(PHASES, 0)  # the process's peak RSS MB in each phase of its run
    anonymous = dict.fromkeys(PHASES, 0)  # ... without file-backed pages (the memory-mapped windows, libraries)
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = threading.Thread(target=lambda: log.extend(process.stdout), daemon=True)
    reader.start()
    while process.poll() is None and time.perf_counter() - started < seconds:
        new, read = log[read:], len(log)  # the lines logged since the last look
        phase = _training_phase(new, phase)
        try:
            peaks[phase] = max(peaks[phase], round(psutil.Process(process.pid).memory_info().rss / 2**20))
            anonymous[phase] = max(anonymous[phase], _anonymous_rss_mb(process.pid))
        except (psutil.Error, OSError):  # ended between the poll and the read
            pass
        if first_step is None and any(line.startswith("train:") for line in new):  # data loaded, model built
            first_step = (time.perf_counter() - started, max(peaks.values()))
        time.sleep(0.25)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    reader.join(timeout=5)
    logged = [line for line in log if "loss" in line]
    return {
        "completed": process.returncode == 0,
        "seconds_watched": round(time.perf_counter() - started, 1),
        "peak_rss_mb": max(peaks.values()),
        "peak_rss_mb_by_phase": peaks,
        "peak_anonymous_rss_mb_by_phase": anonymous,
        "seconds_to_training_loop": round(first_step[0], 1) if first_step else None,
        "rss_mb_at_training_loop": first_step[1] if first_step else None,
        "logged_steps": len(logged),
        "last_log_lines": [line.strip() for line in log[-3:]],
    }


PHASES = ("loading", "training and validation", "final evaluation")


def _training_phase(lines: list[str], phase: str) -> str:
    """Where a ``pretrain.py`` run is after logging ``lines``: the data and model are ready once it logs its
    vocabulary and windows; with ``--max_steps`` its one validation ends the training."""
    for line in lines:
        if "training windows" in line and phase == PHASES[0]:
            phase = PHASES[1]
        elif "validation ndcg@10=" in line:
            phase = PHASES[2]
    return phase


def _anonymous_rss_mb(pid: int) -> int:
    """Resident memory that is the process's own (``RssAnon``): RSS also counts the pages of memory-mapped
    files it has read, which the kernel can drop and reread, and which grow with a prepared folder's windows."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return round(int(line.split()[1]) / 1024)
    return 0
