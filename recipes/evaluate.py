"""Thin launcher: the recipe lives in `bertrec.recipes.evaluate` so `bertrec evaluate` runs it from a pip install too."""

from bertrec.recipes.evaluate import main

if __name__ == "__main__":
    main()
