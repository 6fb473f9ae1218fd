"""MkDocs hook: the built pages name no other host, not even as an XML namespace.

Inline SVG needs no namespace in HTML5, so the theme's `xmlns="http://www.w3.org/2000/svg"`
on its inline icons is dropped; any other URL of another host is left for
tests/test_docs.py to find (and fail on).
"""

from __future__ import annotations

import re
from typing import Any

_SVG_NAMESPACE = re.compile(r'(<svg\b[^>]*?)\s+xmlns="http://www\.w3\.org/2000/svg"')


def _strip(html: str) -> str:
    return _SVG_NAMESPACE.sub(r"\1", html)


def on_post_page(output: str, **kwargs: Any) -> str:
    return _strip(output)


def on_post_template(output_content: str, **kwargs: Any) -> str:
    return _strip(output_content)
