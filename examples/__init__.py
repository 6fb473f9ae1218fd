"""Runnable floxide examples: `python -m examples.<name>` (each module has a `main()`)."""
