"""Thin launcher for `bertrec.recipes.evaluate` (also `bertrec evaluate` after a pip install)."""

from bertrec.cli import run_recipe

if __name__ == "__main__":
    run_recipe("evaluate")
