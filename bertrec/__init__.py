"""bertrec: behavior logs to pretrained, hub-ready sequential recommenders on the Hugging Face stack.

The names a user needs first import from here; each is loaded on first use, so ``import bertrec`` stays light
(no torch or transformers until one of them is asked for)::

    from bertrec import Recommender, read_events, pretrain
    metrics = pretrain(["--dataset", "events.csv", "--output_dir", "outputs/run"])
    rec = Recommender.from_pretrained("outputs/run")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {  # name -> (module, attribute)
    "Recommender": ("bertrec.recommend", "Recommender"),
    "EventTokenizer": ("bertrec.tokenization", "EventTokenizer"),
    "read_events": ("bertrec.data.readers", "read_events"),
    "read_item_features": ("bertrec.data.item_features", "read_item_features"),
    "prepare": ("bertrec.recipes.prepare", "main"),
    "pretrain": ("bertrec.recipes.pretrain", "main"),
    "finetune": ("bertrec.recipes.finetune", "main"),
    "evaluate": ("bertrec.recipes.evaluate", "main"),
    "recommend": ("bertrec.recipes.recommend", "main"),
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bertrec' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
