"""Thin launcher for `bertrec.recipes.recommend` (also `bertrec recommend` after a pip install)."""

from bertrec.cli import run_recipe

if __name__ == "__main__":
    run_recipe("recommend")
