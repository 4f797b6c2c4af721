"""Thin launcher: the recipe lives in `bertrec.recipes.build_tokenizer_assets` so `bertrec build_tokenizer_assets` runs it from a pip install too."""

from bertrec.recipes.build_tokenizer_assets import main

if __name__ == "__main__":
    main()
