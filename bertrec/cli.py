"""``bertrec <recipe> [--flags]``: the recipes of ``recipes/`` for users who installed the package only.

Multi-process runs go through accelerate as usual: ``accelerate launch -m bertrec.cli pretrain ...``.
"""

from __future__ import annotations

import importlib
import sys

RECIPES = {
    "pretrain": "Pretrain a masked-event or next-event model (built-in synthetic data by default).",
    "finetune": "LoRA- (or fully) fine-tune a pretrained model for a ranking task; adapter + merged model.",
    "prepare": "Clean and split a log into a prepared folder (in memory, bucketed, or on Spark) with a report.",
    "evaluate": "Evaluate a saved model on a prepared split.",
    "recommend": "Top-k raw item ids for every user of a history file (JSONL or CSV).",
    "build_tokenizer_assets": "Rebuild the built-in dataset's tokenizer (tokenizer_assets/).",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in RECIPES:
        width = max(map(len, RECIPES))
        lines = [f"  {name.ljust(width)}  {text}" for name, text in RECIPES.items()]
        print("usage: bertrec <recipe> [--config file.yaml] [--flag value ...]\n\nrecipes:\n" + "\n".join(lines))
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"\nunknown recipe {argv[0]!r}", file=sys.stderr)
            raise SystemExit(2)
        return
    run_recipe(argv[0], argv[1:])


def run_recipe(name: str, argv: list[str] | None = None) -> None:
    """Run a recipe; a problem with the user's input or config is one clear line and exit code 2, not a
    traceback from deep inside a library."""
    from bertrec.args import ConfigError
    from bertrec.data.schema import EventDataError
    from bertrec.data.splits import LeakageError

    try:
        importlib.import_module(f"bertrec.recipes.{name}").main(argv)
    except (ConfigError, EventDataError, LeakageError, FileNotFoundError) as error:
        print(f"bertrec {name}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
