"""Thin launcher for `bertrec.recipes.pretrain` (also `bertrec pretrain` after a pip install)."""

from bertrec.cli import run_recipe

if __name__ == "__main__":
    run_recipe("pretrain")
