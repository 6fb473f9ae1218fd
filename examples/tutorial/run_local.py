"""The tutorial's local runs: one node, one ticket, then a whole batch in this process.

Run: python -m examples.tutorial.run_local
"""

from __future__ import annotations

import trio

from examples.tutorial.tickets import (
    TICKETS,
    Classify,
    ClassifyOne,
    Ctx,
    HandleOne,
    Page,
    Summary,
    Ticket,
    queue,
    triage,
)
from floxide import Next, Transition


async def main() -> tuple[Transition[object], object, object, Summary, Ctx]:
    # --8<-- [start:node]
    ctx = Ctx()
    step = await Classify().process(ctx, Ticket("T-1", "Checkout is down"))
    print(step)  # Next(Urgent(ticket=Ticket(id='T-1', text='Checkout is down'), reason='down'))
    # --8<-- [end:node]
    assert isinstance(step, Next)

    # --8<-- [start:first]
    first = await ClassifyOne(classify=Classify()).run(Ctx(), Ticket("T-2", "Typo on a page"))
    print(first)  # Routine(ticket=Ticket(id='T-2', text='Typo on a page'))
    # --8<-- [end:first]

    # --8<-- [start:routed]
    handle = HandleOne(classify=Classify(), page=Page(), queue=queue)
    reply = await handle.run(Ctx(on_call="grace"), Ticket("T-1", "Checkout is down"))
    print(reply)  # Reply(ticket_id='T-1', action='paged grace: down')
    # --8<-- [end:routed]

    # --8<-- [start:triage]
    ctx = Ctx()
    summary = await triage().run(ctx, TICKETS)
    for r in summary.replies:
        print(f"{r.ticket_id}: {r.action}")
    # T-1: paged ada: down
    # T-2: queued for tomorrow
    # T-3: e-mailed the team: data loss
    print(ctx.handled.value, sorted(ctx.paged))  # 3 ['T-1']
    # --8<-- [end:triage]
    return step, first, reply, summary, ctx


if __name__ == "__main__":
    trio.run(main)
