"""`floxide ui`: a web view of distributed and checkpointed runs (needs `floxide[ui]`).

Stack: Starlette, a small, typed, well-kept ASGI toolkit (routing, requests, responses;
no template engine or ORM to carry), served by hypercorn's trio worker, so the UI runs on
the same trio event loop and backends as the rest of floxide (hypercorn is the one
mature ASGI server with a native trio mode; uvicorn is asyncio only). No JavaScript
framework, no CDN, no web font: one hand-written script (live counts by short polling of
the JSON API) and one style sheet, served by the UI itself, so it works offline.

Modules: `_shape` (a run's workflow structure), `_layout` and `_svg` (the graph drawn
in Python), `_data` and `_checkpoints` (the JSON data layer over a backend or a checkpoint
store), `_html` (pages), `_app` (routes, CSRF and origin checks), `_serve` (hypercorn).
"""
