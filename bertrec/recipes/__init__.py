"""The recipes behind ``recipes/*.py`` and the ``bertrec`` console command (so a pip install can run them)."""
