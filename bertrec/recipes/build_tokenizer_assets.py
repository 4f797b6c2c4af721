"""Rebuild the built-in dataset's tokenizer, committed in ``tokenizer_assets/synthetic-shop``.

    python recipes/build_tokenizer_assets.py [--output_dir tokenizer_assets/synthetic-shop]

The vocabulary comes from the training split of the default synthetic log only, so the committed folder and a
rebuild agree token for token and id for id (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bertrec.args import DataArguments, TokenizerArguments, parse_args
from bertrec.atomic import atomic_directory
from bertrec.recipes.common import make_tokenizer, prepare_data, setup_logging

DEFAULT_ASSETS = "tokenizer_assets/synthetic-shop"


@dataclass
class AssetArguments:
    output_dir: str = field(default=DEFAULT_ASSETS, metadata={"help": "Folder to (re)write the tokenizer into."})


def main(argv: list[str] | None = None) -> None:
    data_args, tok_args, asset_args = parse_args((DataArguments, TokenizerArguments, AssetArguments), argv)
    setup_logging(True)
    tokenizer = make_tokenizer(tok_args, prepare_data(data_args).split)
    with atomic_directory(asset_args.output_dir) as folder:
        tokenizer.save(folder)
    print(f"{tokenizer.vocab_size} tokens ({tokenizer.num_items} items) written to {asset_args.output_dir}")


if __name__ == "__main__":
    main()
