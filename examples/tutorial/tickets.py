"""The tutorial's workflow: triage support tickets (docs/tutorial.md builds it step by step).

A batch of tickets fans out, one work item per ticket; each is classified, urgent ones
page the on-call engineer (retried, with an e-mail as the fallback), routine ones are
queued; a join collects the replies in ticket order. Workers load it by module name:
`floxide worker examples.tutorial.tickets:triage --backend URL`.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from floxide import (
    Counter,
    Mergeable,
    Next,
    Node,
    RetryNode,
    RetryPolicy,
    SetUnion,
    SplitNode,
    Transition,
    Workflow,
    node,
    with_retry,
    workflow,
)


# --8<-- [start:types]
@attrs.frozen
class Ticket:
    id: str
    text: str


@attrs.frozen
class Urgent:
    ticket: Ticket
    reason: str


@attrs.frozen
class Routine:
    ticket: Ticket


@attrs.frozen
class Reply:
    ticket_id: str
    action: str


# --8<-- [end:types]


# --8<-- [start:context]
@attrs.define
class Ctx(Mergeable):
    on_call: str = "ada"  # a plain field: set once, every copy agrees
    handled: Counter = attrs.field(factory=Counter)  # branches add to it
    paged: SetUnion[str] = attrs.field(factory=SetUnion)  # ids of the tickets paged


# --8<-- [end:context]


# --8<-- [start:classify]
URGENT_WORDS = ("down", "outage", "data loss")


@attrs.frozen
class Classify(Node[Ctx, Ticket, Urgent | Routine]):
    async def process(self, ctx: Ctx, input: Ticket) -> Transition[Urgent | Routine]:
        for word in URGENT_WORDS:
            if word in input.text.lower():
                return Next(Urgent(input, word))
        return Next(Routine(input))


# --8<-- [end:classify]


# --8<-- [start:first]
@workflow
class ClassifyOne(Workflow[Ctx, Ticket, Urgent | Routine]):
    classify: Classify

    start = "classify"
    edges = {"classify": []}  # [] marks a terminal node: its output is the run's


# --8<-- [end:first]


# --8<-- [start:handlers]
class PagerError(ConnectionError):
    """The pager service refused the page."""


@attrs.frozen
class Page(Node[Ctx, Urgent, Reply]):
    async def process(self, ctx: Ctx, input: Urgent) -> Transition[Reply]:
        if "pager" in input.ticket.text.lower():
            raise PagerError(f"the pager refused {input.ticket.id}")
        ctx.paged = ctx.paged.add(input.ticket.id)
        ctx.handled = ctx.handled.add(1)
        return Next(Reply(input.ticket.id, f"paged {ctx.on_call}: {input.reason}"))


@node
async def queue(ctx: Ctx, input: Routine) -> Transition[Reply]:
    ctx.handled = ctx.handled.add(1)
    return Next(Reply(input.ticket.id, "queued for tomorrow"))


# --8<-- [end:handlers]


# --8<-- [start:routed]
@workflow
class HandleOne(Workflow[Ctx, Ticket, Reply]):
    classify: Classify
    page: Page
    queue: Node[Ctx, Routine, Reply]

    start = "classify"
    edges = {
        "classify": {Urgent: ["page"], Routine: ["queue"]},  # routed by the output's class
        "page": [],
        "queue": [],
    }


# --8<-- [end:routed]


# --8<-- [start:fallback]
@attrs.frozen
class Email(Node[Ctx, Urgent, Reply]):
    """The fallback of `page`: it gets the `Urgent` that `page` failed on."""

    async def process(self, ctx: Ctx, input: Urgent) -> Transition[Reply]:
        ctx.handled = ctx.handled.add(1)
        return Next(Reply(input.ticket.id, f"e-mailed the team: {input.reason}"))


PAGE_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.01)


# --8<-- [end:fallback]


# --8<-- [start:join]
@attrs.frozen
class Summary:
    replies: list[Reply]


@attrs.frozen
class Summarize(Node[Ctx, Sequence[Reply], Summary]):
    async def process(self, ctx: Ctx, input: Sequence[Reply]) -> Transition[Summary]:
        return Next(Summary(list(input)))  # in ticket order, whatever finished first


def each(tickets: list[Ticket]) -> list[Ticket]:
    return tickets


# --8<-- [end:join]


# --8<-- [start:triage]
@workflow
class Triage(Workflow[Ctx, list[Ticket], Summary]):
    split: SplitNode[list[Ticket], Ticket]
    classify: Classify
    page: RetryNode[Ctx, Urgent, Reply]
    email: Email
    queue: Node[Ctx, Routine, Reply]
    summarize: Summarize

    start = "split"
    edges = {
        "split": ["classify"],
        "classify": {Urgent: ["page"], Routine: ["queue"]},
        "page": ["summarize"],
        "email": ["summarize"],
        "queue": ["summarize"],
        "summarize": [],
    }
    on_failure = {"page": ["email"]}  # when paging fails for good, e-mail instead
    joins = {"summarize": "split"}  # once per batch, after every ticket's branch


def triage() -> Triage:
    """The workflow instance; `floxide run/worker examples.tutorial.tickets:triage` call it."""
    return Triage(
        split=SplitNode(each),
        classify=Classify(),
        page=with_retry(Page(), PAGE_RETRY),
        email=Email(),
        queue=queue,
        summarize=Summarize(),
    )


# --8<-- [end:triage]

TICKETS = [
    Ticket("T-1", "Checkout is down for everyone"),
    Ticket("T-2", "Typo on the pricing page"),
    Ticket("T-3", "Data loss after the import, and the pager app crashes"),
]
