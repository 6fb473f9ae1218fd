"""Article writing: several model calls, the sections written in parallel.

`outline` asks the model for an outline and fans out one work item per section;
`write` drafts each section (the calls run concurrently); `edit` is a join of `outline`,
so it runs once, with every draft in outline order, and asks the model to edit them
into one text; `final` asks for a title and returns the finished `Article`.

The model is any object with `async complete(prompt) -> str` (the `Model` protocol).
`FakeModel` answers deterministically from the prompt, with a simulated latency and no
network, so the example runs anywhere and its result can be checked; put a real client
behind the same method to write real articles.

Run: python -m examples.llm_article [TOPIC]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol

import attrs
import trio

from floxide import Counter, Mergeable, Next, NextAll, Node, Transition, Workflow, workflow


class Model(Protocol):
    async def complete(self, prompt: str) -> str: ...


@attrs.define
class FakeModel:
    """A deterministic stand-in for a language model: same prompt, same answer."""

    latency: float = 0.5
    prompts: list[str] = attrs.Factory(list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await trio.sleep(self.latency)
            return self._answer(prompt)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _answer(prompt: str) -> str:
        task, _, text = prompt.partition(": ")
        if task == "Outline":
            return "\n".join(f"{part} {text}" for part in ("Why", "How", "What next for"))
        if task == "Write":
            return f"{text} matters; here is a paragraph about it."
        if task == "Edit":
            return text.replace(" matters; here is a paragraph about it.", ": edited.")
        if task == "Title":
            return text.splitlines()[0].removeprefix("Why ").partition(":")[0].title()
        raise ValueError(f"the fake model has no answer for {prompt!r}")


@attrs.define
class Ctx(Mergeable):
    calls: Counter = attrs.field(factory=Counter)


@attrs.frozen
class Section:
    index: int
    heading: str


@attrs.frozen
class Draft:
    heading: str
    text: str


@attrs.frozen
class Article:
    title: str
    body: str


@attrs.frozen
class Outline(Node[Ctx, str, Section]):
    model: Model

    async def process(self, ctx: Ctx, input: str) -> Transition[Section]:
        outline = await self.model.complete(f"Outline: {input}")
        ctx.calls = ctx.calls.add(1)
        headings = [line.strip() for line in outline.splitlines() if line.strip()]
        return NextAll([Section(i, h) for i, h in enumerate(headings)])


@attrs.frozen
class Write(Node[Ctx, Section, Draft]):
    model: Model

    async def process(self, ctx: Ctx, input: Section) -> Transition[Draft]:
        text = await self.model.complete(f"Write: {input.heading}")
        ctx.calls = ctx.calls.add(1)
        return Next(Draft(input.heading, text))


@attrs.frozen
class Edit(Node[Ctx, Sequence[Draft], str]):
    model: Model

    async def process(self, ctx: Ctx, input: Sequence[Draft]) -> Transition[str]:
        joined = "\n".join(draft.text for draft in input)  # outline order, not finish order
        edited = await self.model.complete(f"Edit: {joined}")
        ctx.calls = ctx.calls.add(1)
        return Next(edited)


@attrs.frozen
class Final(Node[Ctx, str, Article]):
    model: Model

    async def process(self, ctx: Ctx, input: str) -> Transition[Article]:
        title = await self.model.complete(f"Title: {input}")
        ctx.calls = ctx.calls.add(1)
        return Next(Article(title, input))


@workflow
class ArticleWriter(Workflow[Ctx, str, Article]):
    outline: Outline
    write: Write
    edit: Edit
    final: Final

    start = "outline"
    edges = {"outline": ["write"], "write": ["edit"], "edit": ["final"], "final": []}
    joins = {"edit": "outline"}


def article_writer(model: Model) -> ArticleWriter:
    return ArticleWriter(
        outline=Outline(model), write=Write(model), edit=Edit(model), final=Final(model)
    )


async def main(topic: str = "typed workflows") -> tuple[Article, int, int, float]:
    """Returns (the article, model calls, most calls at once, seconds taken)."""
    model = FakeModel()
    ctx = Ctx()
    started = trio.current_time()
    article = await article_writer(model).run(ctx, topic)
    took = trio.current_time() - started
    print(f"# {article.title}\n\n{article.body}\n")
    print(f"{ctx.calls.value} model calls, up to {model.most_in_flight} at once, {took:.1f} s")
    return article, ctx.calls.value, model.most_in_flight, took


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "typed workflows")
