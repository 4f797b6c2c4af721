"""The one explicit accelerate training loop: accumulate, clip, schedule, evaluate, checkpoint, resume.

Determinism is by construction rather than by restoring hidden RNG state: the epoch's data order, each step's
masking and each step's dropout are seeded from ``(seed, epoch)`` / ``(seed, step)``. A run killed and resumed
from a checkpoint therefore replays exactly what the uninterrupted run would have done. Trainer state (step,
epoch, early-stopping counters, evaluation history) is JSON; model, optimizer and scheduler go through
``Accelerator.save_state``. Checkpoint folders are written under a temp name and renamed when complete;
each carries a manifest of its files' checksums, checked before a resume, so a damaged checkpoint is refused
by name instead of half-loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from bertrec import repeats, stacked, transitions
from bertrec.atomic import atomic_directory, atomic_write_text
from bertrec.collators import (
    TokenLayout,
    last_event_labels,
    mask_events,
    next_event_labels,
    pad_sequences,
    window_noise,
)
from bertrec.integrity import CorruptedFileError, verify_manifest, write_manifest
from bertrec.sharding import full_state_dict, gathered_parameters, load_full_state_dict, save_weights

logger = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"
CHECKPOINT_DIR = "checkpoints"  # inside the output folder; each checkpoint carries its own manifest
BEST_DIR = "best"


@dataclass
class TrainingArguments:
    output_dir: str = field(
        default="outputs/pretrain", metadata={"help": "Where the model, metrics and checkpoints go."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for initialisation, data order, masking and dropout."})
    num_epochs: int = field(default=10, metadata={"help": "Maximum training epochs."})
    batch_size: int = field(default=128, metadata={"help": "Sequences per step per process (before accumulation)."})
    eval_batch_size: int = field(default=512, metadata={"help": "Users per evaluation batch."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Fraction of steps of linear warmup."})
    lr_scheduler: str = field(default="cosine", metadata={"help": "transformers scheduler name after warmup."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm; 0 disables."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    group_by_length: bool = field(
        default=False,
        metadata={
            "help": "Batch windows of similar length together: less padding and faster steps, but a short "
            "window's positions then weigh more than a long one's, which costs accuracy (epoch_batches). "
            "The default until 2026-12-05."
        },
    )
    mixed_precision: str | None = field(
        default=None,
        metadata={"help": "no, fp16 or bf16; unset: the accelerate config's (launcher), else no."},
    )
    eval_every_epochs: int = field(default=1, metadata={"help": "Validate (and checkpoint) every N epochs."})
    early_stopping_patience: int = field(
        default=10,
        metadata={"help": "Stop after N evaluations without a better validation NDCG@10; 0 disables."},
    )
    anneal_on_plateau: float = field(
        default=0.0,
        metadata={
            "help": "When early stopping fires, go back to the best weights and decay the learning rate linearly "
            "to zero over this fraction of the steps it took to reach them (whole validation periods), validating "
            "as before, then stop. The decay then starts where validation stopped improving, not where "
            "--num_epochs put it: pair it with --lr_scheduler constant_with_warmup and a short patience. "
            "0: stop at once."
        },
    )
    max_train_seconds: float = field(
        default=0.0,
        metadata={
            "help": "Stop at the first validation past this many wall seconds of training (counted across "
            "resumed runs) and keep the best weights so far; 0: no limit."
        },
    )
    max_steps: int = field(
        default=0,
        metadata={
            "help": "Stop after this many optimizer steps in all (as in transformers' TrainingArguments: the "
            "schedule ends there), validating at that step; 0: num_epochs decides."
        },
    )
    checkpoint_every_steps: int = field(default=0, metadata={"help": "Also checkpoint every N optimizer steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Step checkpoints to keep."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "A checkpoint folder or 'latest'."})
    report_to: str = field(default="none", metadata={"help": "accelerate tracker: none, tensorboard, wandb, ..."})
    cpu_threads: int = field(
        default=0,
        metadata={
            "help": "Torch threads for a single CPU process; 0 uses every available core (plain "
            "`accelerate launch` without a config would pin one thread)."
        },
    )
    logging_steps: int = field(default=50, metadata={"help": "Log the training loss every N optimizer steps."})
    torch_compile: bool = field(
        default=False,
        metadata={"help": "Compile the transformer with torch.compile (dynamic shapes): a one-off compile cost."},
    )

    def __post_init__(self) -> None:
        from bertrec.args import check_output_folder

        check_output_folder(self.output_dir)


@dataclass
class Objective:
    """How a batch becomes (inputs, labels): the collator side of masked-event or next-event training."""

    name: str
    layout: TokenLayout
    mask_prob: float = 0.2
    mask_action_prob: float = 0.5
    conditioned: bool = False
    last_event_only: bool = False  # fine-tuning prompts: each sequence ends with its target event

    @property
    def is_random(self) -> bool:
        """Whether batches take random draws (masked events; a stacked causal layout's hidden next actions)."""
        if self.last_event_only:
            return False
        return self.name == "masked" or (self.layout.stacked and self.layout.has_action)

    def noise(self, windows: np.ndarray, lengths: np.ndarray, seed: int, epoch: int) -> torch.Tensor | None:
        """The draws of the batch of ``windows`` (indices into ``lengths``, every training window's length in
        positions), padded as ``pad_sequences`` pads it, to its longest window; each window's from the run's seed,
        the epoch and the window alone (``collators.window_noise``)."""
        if not self.is_random:
            return None
        per_event = self.layout.positions_per_event
        events = lengths[windows] // per_event
        epoch_seed = _seed_for(seed, epoch)
        return window_noise([epoch_seed + int(w) for w in windows], events.tolist(), int(events.max()))

    def inputs_and_labels(self, batch: dict, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``noise``: the batch's draws, from :meth:`noise` (None where the objective draws nothing)."""
        if self.layout.stacked:
            return self._stacked(batch, noise)
        if self.last_event_only:
            return last_event_labels(
                batch["input_ids"],
                batch["attention_mask"],
                self.layout,
                objective=self.name,
                conditioned=self.conditioned,
            )
        if self.name == "masked":
            return mask_events(
                batch["input_ids"],
                batch["attention_mask"],
                self.layout,
                mask_prob=self.mask_prob,
                mask_action_prob=self.mask_action_prob,
                noise=noise,
            )
        labels = next_event_labels(batch["input_ids"], batch["attention_mask"], self.layout, self.conditioned)
        return batch["input_ids"], labels

    def _stacked(self, batch: dict, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One position per event (``bertrec.stacked``); the next event's action is hidden as often as a
        masked event's action is, so a causal model learns the open and the conditioned question alike."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.last_event_only:
            return stacked.last_event_batch(ids, mask, self.layout, objective=self.name, conditioned=self.conditioned)
        if self.name == "masked":
            return stacked.masked_event_batch(
                ids,
                mask,
                self.layout,
                mask_prob=self.mask_prob,
                mask_action_prob=self.mask_action_prob,
                noise=noise,
            )
        return stacked.next_event_batch(ids, mask, self.layout, hide_action_prob=self.mask_action_prob, noise=noise)


def configure_cpu_threads(accelerator, cpu_threads: int) -> None:
    """Use every core for a single CPU process: `accelerate launch` without a config sets OMP_NUM_THREADS=1."""
    if accelerator.device.type != "cpu" or accelerator.num_processes > 1:
        return
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = cpu_threads or available
    if threads != torch.get_num_threads():
        logger.info("using %d CPU threads (was %d)", threads, torch.get_num_threads())
        torch.set_num_threads(threads)


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int, world: int, *, group_by_length: bool
) -> list[np.ndarray]:
    """This process's batches for one epoch, in a seeded order: a seeded permutation cut into pools of 64
    global batches, each pool cut into batches, the batches shuffled. Each global batch is split across
    processes, so every process takes the same number of steps.

    ``group_by_length`` sorts each pool by length before it is cut: less padding and faster steps, but each
    batch then holds windows of one length, and the loss is a mean per batch, so a batch of two-event windows
    moves the model as far as a batch of fifty-event ones and a short window's positions weigh up to 25 times
    more than a long one's. On amazon-beauty that weighting alone held validation NDCG@10 at 0.0096 after two
    epochs and 0.0178 after four, against 0.0125 and 0.0255 with mixed batches (BENCHMARKS.md).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    global_size = batch_size * world
    pool = global_size * 64
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        if group_by_length:
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + global_size] for i in range(0, len(chunk), global_size)]
    batches = [batches[i] for i in rng.permutation(len(batches))]
    return [np.array_split(b, world)[rank] for b in batches if len(b) >= world]


def _to_device(device: torch.device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Batches are built on the CPU; to a GPU they go through pinned memory without blocking the host."""
    if device.type != "cuda":
        return tuple(t.to(device) for t in tensors)
    return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)


def _global_mean_weight(accelerator, labels: torch.Tensor) -> torch.Tensor | float:
    """Scale of this process's mean loss so that DDP's average over processes is the mean over every labelled
    position of the global batch, as one process would compute it (processes hold different label counts)."""
    if accelerator.num_processes == 1:
        return 1.0
    count = (labels != -100).sum().float()
    total = accelerator.reduce(count.clone(), reduction="sum")
    return count * accelerator.num_processes / total.clamp(min=1.0)


def _seed_for(seed: int, *parts: int) -> int:
    return int(np.random.default_rng([seed, *parts]).integers(2**62))


def _decay_groups(model: torch.nn.Module, weight_decay: float, learning_rate: float) -> list[dict]:
    """AdamW groups: decay on matrices; none on biases and norms; the repeat table and transition weights
    (``bertrec.repeats``, ``bertrec.transitions``) apart, undecayed and at a higher rate, as their few scalars
    must reach logit scale."""
    decay, no_decay, repeat = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith((repeats.PARAMETER, repeats.GATE, transitions.PARAMETER)):
            repeat.append(param)
        else:
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if repeat:
        groups.append({"params": repeat, "weight_decay": 0.0, "lr": learning_rate * repeats.LEARNING_RATE_SCALE})
    return groups


def complete_checkpoints(checkpoint_root: Path) -> list[Path]:
    """Checkpoint folders that were renamed into place (they hold the trainer state), oldest step first."""
    steps = [
        (int(m.group(1)), p)
        for p in checkpoint_root.glob("checkpoint-*")
        if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(steps)]


def latest_checkpoint(checkpoint_root: Path) -> Path | None:
    complete = complete_checkpoints(checkpoint_root)
    return complete[-1] if complete else None


def train(
    accelerator,
    loss_module: torch.nn.Module,
    train_sequences: Sequence[np.ndarray],
    objective: Objective,
    evaluate: Callable[[], dict] | None,
    args: TrainingArguments,
    selection_metric: str = "ndcg@10",
) -> dict:
    """Train ``loss_module`` (an ``ItemLoss``) and leave the best validation weights loaded in it.

    ``evaluate`` returns validation metrics for the current weights; ``None`` (a final fit, with nothing left
    to validate on) trains all ``num_epochs`` and keeps the last weights. Returns the trainer state (history
    of validation metrics, best step and value).
    """
    if evaluate is None and args.early_stopping_patience:
        logger.warning("nothing to validate on: --early_stopping_patience is ignored, all epochs run")
    checkpoint_root = Path(args.output_dir) / CHECKPOINT_DIR
    rank, world = accelerator.process_index, accelerator.num_processes
    lengths = np.fromiter((len(s) for s in train_sequences), dtype=np.int64, count=len(train_sequences))

    def batches_of(epoch: int) -> list[np.ndarray]:  # this process's batches, the same on every call for an epoch
        grouped = args.group_by_length
        return epoch_batches(lengths, args.batch_size, args.seed, epoch, rank, world, group_by_length=grouped)

    steps_per_epoch = math.ceil(len(batches_of(0)) / args.gradient_accumulation_steps)
    total_steps = steps_per_epoch * args.num_epochs
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    optimizer = torch.optim.AdamW(
        _decay_groups(loss_module, args.weight_decay, args.learning_rate), lr=args.learning_rate
    )
    scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer,
        num_warmup_steps=int(args.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    # the scheduler is a pure function of the step: kept out of accelerate (which would step it once per
    # process) and fast-forwarded on resume instead of being unpickled
    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
    item_loss = accelerator.unwrap_model(loss_module)
    if args.torch_compile:  # the backbone only: batches vary in length, and the loss indexes labelled positions
        backbone = item_loss.model.base_model
        backbone.forward = torch.compile(backbone.forward, dynamic=True)
    state = {
        "global_step": 0,
        "epoch": 0,
        "micro_step_in_epoch": 0,
        "best_metric": -1.0,
        "best_step": -1,
        "bad_evaluations": 0,
        "history": [],
        "elapsed_seconds": 0.0,  # training + validation wall time, summed over resumed runs
    }
    resume = args.resume_from_checkpoint
    if resume:
        path = latest_checkpoint(checkpoint_root) if resume == "latest" else Path(resume)
        if path is None:
            logger.warning("--resume_from_checkpoint latest: no checkpoint in %s, starting fresh", checkpoint_root)
        else:
            state = _load_checkpoint(accelerator, path)
            for _ in range(state["global_step"]):
                scheduler.step()
            if "anneal" in state:
                _set_annealed_lr(optimizer, scheduler, state)
            logger.info("resumed from %s at step %d", path, state["global_step"])
    progress = tqdm(
        total=total_steps,
        initial=state["global_step"],
        desc="train",
        disable=not accelerator.is_local_main_process,
    )
    stop = False
    clock = _Clock(state.get("elapsed_seconds", 0.0))
    while _steps_left(state, args, total_steps) and not stop:
        batches = batches_of(state["epoch"])
        for micro, indices in enumerate(batches):
            if micro < state["micro_step_in_epoch"]:
                continue
            step = state["global_step"]
            torch.manual_seed(_seed_for(args.seed, step, micro, rank))  # dropout
            generator = torch.Generator().manual_seed(_seed_for(args.seed, step, micro, rank, 1))
            batch = pad_sequences([train_sequences[i] for i in indices], objective.layout.pad_id)
            noise = objective.noise(indices, lengths, args.seed, state["epoch"])
            input_ids, labels = objective.inputs_and_labels(batch, noise)
            sync = (micro + 1) % args.gradient_accumulation_steps == 0 or micro == len(batches) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(loss_module):
                input_ids, attention_mask, labels = _to_device(
                    accelerator.device, input_ids, batch["attention_mask"], labels
                )
                loss = loss_module(input_ids, attention_mask, labels, generator)
                accelerator.backward(_global_mean_weight(accelerator, labels) * loss / args.gradient_accumulation_steps)
            state["micro_step_in_epoch"] = micro + 1
            if not sync:
                continue
            if args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(loss_module.parameters(), args.max_grad_norm)
            optimizer.step()
            item_loss.after_optimizer_step()
            state["global_step"] += 1
            if "anneal" in state:
                _set_annealed_lr(optimizer, scheduler, state)
            else:
                scheduler.step()
            optimizer.zero_grad()
            progress.update(1)
            if state["global_step"] % args.logging_steps == 0:
                accelerator.log(
                    {"train/loss": loss.item(), "train/lr": optimizer.param_groups[0]["lr"]},
                    step=state["global_step"],
                )
                progress.set_postfix(loss=f"{loss.item():.3f}")
            if args.checkpoint_every_steps and state["global_step"] % args.checkpoint_every_steps == 0:
                _save_checkpoint(accelerator, checkpoint_root, state, args.save_total_limit)
            if state["global_step"] >= _end_step(state, total_steps):  # --max_steps ends it inside this epoch
                break
        last_step = state["global_step"] >= _end_step(state, total_steps)
        if not (last_step and state["micro_step_in_epoch"] < len(batches)):  # else: stopped inside the epoch
            state["epoch"] += 1
            state["micro_step_in_epoch"] = 0
        if state["epoch"] % args.eval_every_epochs == 0 or state["epoch"] == args.num_epochs or last_step:
            stop = _validate(accelerator, loss_module, evaluate, state, args, checkpoint_root, selection_metric, clock)
            if last_step and args.max_steps and "stopped_by" not in state:
                state["stopped_by"] = "max steps"
            if state.get("stopped_by") == "early stopping" and args.anneal_on_plateau and "anneal" not in state:
                _start_anneal(item_loss.model, optimizer, scheduler, state, args, steps_per_epoch, checkpoint_root)
                stop = False
                progress.total = _end_step(state, total_steps)
                progress.refresh()
            _save_checkpoint(accelerator, checkpoint_root, state, args.save_total_limit)
    progress.close()
    best = checkpoint_root / BEST_DIR / "model.safetensors"
    if best.is_file():
        _load_best(item_loss.model, best)
    accelerator.wait_for_everyone()
    return state


def _anneal_end(state: dict) -> int:
    return state["anneal"]["start_step"] + state["anneal"]["steps"]


def _end_step(state: dict, total_steps: int) -> int:
    """The step the run ends at: the schedule's last, or the anneal's once one started."""
    return _anneal_end(state) if "anneal" in state else total_steps


def _steps_left(state: dict, args: TrainingArguments, total_steps: int) -> bool:
    """An anneal runs to its end even past --num_epochs: it started where early stopping would have ended it."""
    if "anneal" in state:
        return state["global_step"] < _anneal_end(state)
    return state["epoch"] < args.num_epochs and state["global_step"] < total_steps


def _start_anneal(model, optimizer, scheduler, state: dict, args: TrainingArguments, steps_per_epoch: int, root):
    """Early stopping fired: reload the best weights and decay from the learning rate they were trained at.

    Why: a schedule fitted to --num_epochs (a cosine) decays at a pace set before the run knew where
    validation would peak; a constant rate never decays at all. Annealing from the best weights once validation
    stalls is the warmup-stable-decay idea with the decay placed by the data. The decay covers whole validation
    periods, so its last step is validated. The optimizer's moments are kept: they are a few epochs newer than
    the weights, which their slow averages barely notice.
    """
    period = steps_per_epoch * args.eval_every_epochs
    wanted = args.anneal_on_plateau * max(state["best_step"], 1)
    steps = max(1, math.ceil(wanted / period)) * period
    factor = scheduler.lr_lambdas[0](state["best_step"])  # transformers' schedules: one LambdaLR factor per group
    _load_best(model, root / BEST_DIR / "model.safetensors")
    state.pop("stopped_by")
    state.update(bad_evaluations=0, anneal={"start_step": state["global_step"], "steps": steps, "factor": factor})
    _set_annealed_lr(optimizer, scheduler, state)
    logger.info(
        "validation stalled: annealing from the best weights (step %d) over %d steps", state["best_step"], steps
    )


def _set_annealed_lr(optimizer, scheduler, state: dict) -> None:
    """The next step's learning rate in an anneal: the best step's rate, falling linearly towards zero."""
    anneal = state["anneal"]
    left = 1.0 - (state["global_step"] - anneal["start_step"]) / anneal["steps"]
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * anneal["factor"] * max(left, 0.0)


def _load_best(model: torch.nn.Module, path: Path) -> None:
    """Load the best weights; the file holds one name per group of tied tensors (e.g. the embedding and the
    output matrix), and only such duplicates may be missing: anything else means the file does not belong to
    this model."""
    verify_manifest(path.parent, what="best-weights folder")
    saved = load_file(path)
    result = load_full_state_dict(model, saved)
    groups: dict[int, set[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), set()).add(name)
    covered = {name for names in groups.values() if names & saved.keys() for name in names}
    unexplained = [k for k in result.missing_keys if k not in covered] + list(result.unexpected_keys)
    if unexplained:
        raise ValueError(f"{path} does not match the model being trained: {unexplained[:5]}")


class _Clock:
    """Wall seconds of this training, continuing the count of the run it resumed (time to the best epoch)."""

    def __init__(self, already: float):
        self.already, self.started = already, time.perf_counter()

    def seconds(self) -> float:
        return round(self.already + time.perf_counter() - self.started, 2)


def _validate(accelerator, loss_module, evaluate, state, args, checkpoint_root, selection_metric, clock) -> bool:
    """Evaluate, keep the best weights, update early stopping; returns True when training should stop."""
    state.pop("stopped_by", None)  # a resumed run may have a larger budget or patience
    metrics = {}
    if evaluate is not None:
        with gathered_parameters(loss_module):  # a no-op unless FSDP sharded the model
            metrics = evaluate()
    state["elapsed_seconds"] = clock.seconds()
    state["history"].append(
        {"epoch": state["epoch"], "step": state["global_step"], "elapsed_seconds": state["elapsed_seconds"], **metrics}
    )
    if evaluate is None:  # a final fit: the latest weights are the result
        state["best_step"] = state["global_step"]
    else:
        _keep_if_best(accelerator, loss_module, metrics, state, checkpoint_root, selection_metric)
    if args.max_train_seconds and state["elapsed_seconds"] >= args.max_train_seconds:
        state["stopped_by"] = "time budget"
    elif "anneal" in state:  # the decay runs to its end (it is bounded): its best epochs are often its last
        if state["global_step"] >= _anneal_end(state):
            state["stopped_by"] = "annealed"
    elif args.early_stopping_patience and state["bad_evaluations"] >= args.early_stopping_patience:
        state["stopped_by"] = "early stopping"
    return "stopped_by" in state


def _keep_if_best(accelerator, loss_module, metrics: dict, state: dict, checkpoint_root: Path, metric: str) -> None:
    """Log validation metrics; save the weights as the best ones when ``metric`` beats the best so far."""
    value = metrics[metric]
    accelerator.log({f"valid/{k}": v for k, v in metrics.items()}, step=state["global_step"])
    logger.info("epoch %d step %d validation %s=%.4f", state["epoch"], state["global_step"], metric, value)
    if value > state["best_metric"]:
        state.update(best_metric=value, best_step=state["global_step"], bad_evaluations=0)
        model = accelerator.unwrap_model(loss_module).model
        weights = full_state_dict(model)  # FSDP: gathered on the main process (a collective); else None
        if accelerator.is_main_process:
            with atomic_directory(checkpoint_root / BEST_DIR) as folder:
                # safetensors' own writer: it drops tied duplicates of any kind, including the ones peft's
                # trainable tokens share between the input and output layer, which save_pretrained rejects
                save_weights(model, str(Path(folder) / "model.safetensors"), weights)
                write_manifest(folder)
        accelerator.wait_for_everyone()
    else:
        state["bad_evaluations"] += 1


def _save_checkpoint(accelerator, checkpoint_root: Path, state: dict, keep: int) -> None:
    """Model/optimizer/scheduler via accelerate and the trainer state as JSON, renamed into place when complete."""
    target = checkpoint_root / f"checkpoint-{state['global_step']}"
    temp = checkpoint_root / f".checkpoint-{state['global_step']}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)  # before any process writes its own RNG state file into it
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(temp))
        accelerator.wait_for_everyone()  # every process has written its files before the folder is renamed
        if accelerator.is_main_process:
            atomic_write_text(temp / STATE_FILE, json.dumps(state, indent=2))
            write_manifest(temp)
    except OSError as error:  # disk full, quota, permissions: the earlier checkpoints are untouched
        shutil.rmtree(temp, ignore_errors=True)
        raise OSError(
            error.errno,
            f"could not write checkpoint {target} ({error.strerror or error}); the last complete checkpoint "
            f"({latest_checkpoint(checkpoint_root) or 'none yet'}) is untouched: free space, then rerun with "
            "--resume_from_checkpoint latest",
        ) from error
    if accelerator.is_main_process:
        shutil.rmtree(target, ignore_errors=True)
        temp.rename(target)
        for old in complete_checkpoints(checkpoint_root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_checkpoint(accelerator, path: Path) -> dict:
    """Trainer state and model/optimizer state of a checkpoint, after checking every file against its manifest."""
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE}); pick another or 'latest'")
    try:
        verify_manifest(path, what="checkpoint")
    except CorruptedFileError as error:
        earlier = [p for p in complete_checkpoints(path.parent) if p != path]
        hint = f" Resume from an earlier one, e.g. --resume_from_checkpoint {earlier[-1]}" if earlier else ""
        raise CorruptedFileError(f"{error}.{hint}") from error
    state = json.loads(state_file.read_text())
    accelerator.load_state(str(path))
    return state
