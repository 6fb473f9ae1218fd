"""Scripts run in subprocesses by the checkpoint tests (killed, then resumed)."""
