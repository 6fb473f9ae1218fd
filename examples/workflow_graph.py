"""Workflow graphs: render a workflow as Graphviz DOT or a Mermaid flowchart.

Uses the order workflow from `examples.order` (edges, routes and `on_failure` fallbacks)
and the branching workflow from `examples.branching` (a routing table). The CLI does the
same: `floxide graph examples.order:order_flow --format mermaid`.

Run: python -m examples.workflow_graph
"""

from __future__ import annotations

import trio

from examples.branching import Big, Small, Threshold, ThresholdFlow
from examples.order import order_flow


async def main() -> tuple[str, str, str]:
    order = order_flow()
    dot = order.to_dot()
    mermaid = order.to_mermaid()
    routes = ThresholdFlow(check=Threshold(10), big=Big(), small=Small()).to_mermaid()
    print(dot, mermaid, routes, sep="\n")
    return dot, mermaid, routes


if __name__ == "__main__":
    trio.run(main)
