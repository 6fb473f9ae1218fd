"""The node library: nodes built from other nodes, functions and workflows."""

from floxide._nodes.batch import BatchNode
from floxide._nodes.composite import CompositeNode
from floxide._nodes.source import Source, SourceResult, SourceStats, source
from floxide._nodes.split import SplitNode

__all__ = [
    "BatchNode",
    "CompositeNode",
    "Source",
    "SourceResult",
    "SourceStats",
    "SplitNode",
    "source",
]
