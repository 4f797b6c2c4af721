"""Peak RSS of a ``recipes/pretrain.py`` run stage by stage: where a training process's memory goes.

    python benchmarks/training_memory_stages.py --prepared_dir DIR --output_dir OUT [pretrain flags]
    PYTHONPATH=/path/to/older/checkout python benchmarks/training_memory_stages.py --cut_epoch_to 30 ...

Wraps the recipe's stages (reading the folder, building the model, the item initialisation, item counts,
training, validation, baselines, final evaluation) and prints, for each, the RSS before it and the peak while it
ran (sampled every 50 ms). ``--cut_epoch_to N`` trains only the first N batches of the epoch, which emulates
``--max_steps N`` on a checkout older than that flag, so two commits can be compared on one folder and workload.
"""

from __future__ import annotations

import functools
import sys
import threading
import time

import psutil

PROCESS = psutil.Process()
PEAK = [0]  # since the current stage began
OVERALL = [0]
STAGES = (
    "read_prepared", "build_model", "init_from_transitions", "item_counts", "evaluate_baselines", "evaluate_parts"
)  # fmt: skip


def _sample() -> None:
    while True:
        rss = PROCESS.memory_info().rss
        PEAK[0], OVERALL[0] = max(PEAK[0], rss), max(OVERALL[0], rss)
        time.sleep(0.05)


def _mb(size: int) -> int:
    return round(size / 2**20)


def _measured(name: str, function):
    @functools.wraps(function)
    def run(*args, **kwargs):
        before = PROCESS.memory_info().rss
        PEAK[0] = before
        result = function(*args, **kwargs)
        print(f"[stage] {name}: before {_mb(before)} MB, peak {_mb(PEAK[0])} MB", flush=True)
        return result

    return run


def main() -> None:
    import bertrec.recipes.pretrain as recipe
    import bertrec.training as training

    argv = sys.argv[1:]
    if "--cut_epoch_to" in argv:
        at = argv.index("--cut_epoch_to")
        batches = int(argv[at + 1])
        del argv[at : at + 2]
        epoch_batches = training.epoch_batches
        training.epoch_batches = lambda *args, **kwargs: epoch_batches(*args, **kwargs)[:batches]
    threading.Thread(target=_sample, daemon=True).start()
    for name in STAGES:
        setattr(recipe, name, _measured(name, getattr(recipe, name)))
    validation_of = recipe.validation_of

    def measured_validation(*args, **kwargs):
        validate = validation_of(*args, **kwargs)
        return validate and _measured("validation", validate)

    recipe.validation_of = measured_validation
    recipe.train = _measured("training (with its validations)", recipe.train)
    recipe.main(argv)
    print(f"[stage] whole run: peak {_mb(OVERALL[0])} MB", flush=True)


if __name__ == "__main__":
    main()
