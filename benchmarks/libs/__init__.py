"""One module per measured library; each runs in its own process (see child.py)."""
