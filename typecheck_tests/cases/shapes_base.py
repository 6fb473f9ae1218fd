"""A workflow in another module, inherited by `case_shapes.py`."""

from __future__ import annotations

from floxide import Node, Workflow, workflow


class Step(Node[None, int, int]): ...


@workflow
class Imported(Workflow[None, int, int]):
    step: Step

    start = "step"
    edges = {"step": []}


@workflow
class ImportedFallbacks(Workflow[None, int, int]):
    step: Step
    rescue: Step

    start = "step"
    edges = {"step": [], "rescue": []}
    on_failure = {"step": ["rescue"]}
