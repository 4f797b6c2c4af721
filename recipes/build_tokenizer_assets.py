"""Thin launcher for `bertrec.recipes.build_tokenizer_assets` (also `bertrec build_tokenizer_assets`)."""

from bertrec.cli import run_recipe

if __name__ == "__main__":
    run_recipe("build_tokenizer_assets")
