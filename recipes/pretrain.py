"""Thin launcher: the recipe lives in `bertrec.recipes.pretrain` so `bertrec pretrain` runs it from a pip install too."""

from bertrec.recipes.pretrain import main

if __name__ == "__main__":
    main()
