"""Thin launcher: the recipe lives in `bertrec.recipes.prepare` so `bertrec prepare` runs it from a pip install too."""

from bertrec.recipes.prepare import main

if __name__ == "__main__":
    main()
