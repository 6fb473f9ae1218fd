# ruff: noqa: E501
"""on_failure: a fallback receives the failing node's input (floxide-edge, floxide-graph)."""

from __future__ import annotations

from floxide import Node, Workflow, workflow


class Ctx: ...


class Order: ...


class Receipt: ...


class Pay(Node[Ctx, Order, Receipt]): ...


class Refund(Node[Ctx, Order, Receipt]): ...


class Audit(Node[Ctx, object, Receipt]): ...


class Email(Node[Ctx, Receipt, Receipt]): ...


@workflow
class GoodFallback(Workflow[Ctx, Order, Receipt]):
    pay: Pay
    refund: Refund  # reachable only through on_failure: that counts
    audit: Audit

    start = "pay"
    edges = {"pay": [], "refund": [], "audit": []}
    on_failure = {"pay": ["refund", "audit"]}


@workflow
class BadFallbackType(Workflow[Ctx, Order, Receipt]):
    pay: Pay
    email: Email

    start = "pay"
    edges = {"pay": ["email"], "email": []}
    on_failure = {
        "pay": ["email"],  # E: [floxide-edge] fallback "pay" -> "email" of workflow "BadFallbackType"
    }


@workflow
class BadFallbackNames(Workflow[Ctx, Order, Receipt]):
    pay: Pay
    refund: Refund

    start = "pay"
    edges = {"pay": [], "refund": []}
    on_failure = {
        "pay": ["refund", "refnud"],  # E: [floxide-graph] fallback "pay" -> "refnud" of workflow
        "pya": ["refund"],  # E: [floxide-graph] on_failure of workflow "BadFallbackNames" has an ent
        "refund": "pay",  # E: [floxide-graph] on_failure["refund"] of workflow "BadFallbackNames" mu
    }
