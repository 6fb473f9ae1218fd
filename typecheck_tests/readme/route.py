import attrs

from floxide import Node, Workflow, workflow


@attrs.frozen
class Above:
    value: int


@attrs.frozen
class Below:
    message: str


class Threshold(Node[None, int, Above | Below]): ...


class BigNode(Node[None, Above, str]): ...


class SmallNode(Node[None, Below, str]): ...


@workflow
class Pipeline(Workflow[None, int, str]):
    check: Threshold
    big: BigNode
    small: SmallNode

    start = "check"
    edges = {
        "check": {Above: ["small"]},
        "big": [],
        "small": [],
    }
