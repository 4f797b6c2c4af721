"""Thin launcher for `bertrec.recipes.prepare` (also `bertrec prepare` after a pip install)."""

from bertrec.cli import run_recipe

if __name__ == "__main__":
    run_recipe("prepare")
