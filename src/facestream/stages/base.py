"""What a stage is: a named function from a batch of inputs to one outcome per input."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from facestream.errors import InvalidMessage

In = TypeVar("In", contravariant=True)
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class Stage(Protocol[In, O]):
    name: str

    def process(self, items: Sequence[In]) -> list[list[O] | InvalidMessage]:
        """One outcome per input, in order. Raise only for failures that must stop the
        batch from committing (e.g. the gallery is down); bad input is an outcome."""
        ...


def each(items: Sequence[I], fn: Callable[[I], list[O]]) -> list[list[O] | InvalidMessage]:
    """Apply a per-item function, turning `InvalidMessage` into that item's outcome."""
    outcomes: list[list[O] | InvalidMessage] = []
    for item in items:
        try:
            outcomes.append(fn(item))
        except InvalidMessage as exc:
            outcomes.append(exc)
    return outcomes
