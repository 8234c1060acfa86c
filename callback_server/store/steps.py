"""How a store plan talks to the database adapter that runs it (store/sql.py has the plans).

A plan is a generator that yields steps (`Query`, `KeyLock`, `Changed`), gets each query's result
back, and returns the operation's result. The adapters run a plan inside one transaction, each
its own way: SQLite synchronously on its single writer thread (store/sqlite.py: group commit),
PostgreSQL on a pooled asyncpg connection, awaiting every statement (store/postgres.py).

Statements use PostgreSQL's `$n` placeholders and `{token}`s the adapter's `Dialect` fills:
`{now}` is the database's clock in unix seconds (leases follow it on both stores, so processes and
replicas with skewed clocks agree on who holds one), `{for_update}` locks the rows read (nothing
on SQLite, whose one writer already serialises every write), `{id}`/`{real}`/`{blob}`/`{bool}`/
`{bigint}` are DDL types, `{columns}` lists table $1's columns.

A write plan may run twice on SQLite (its writer re-runs a batch when one request in it fails), so
adapters take a plan *factory* and plans keep no state outside their own frame.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

T = TypeVar("T")


class Want(Enum):
    """What a query's step gets back."""

    NOTHING = "nothing"
    COUNT = "count"  # rows changed
    NEW_ID = "new_id"  # the `id` of the row an INSERT made (SQLite's lastrowid, PostgreSQL's RETURNING)
    ROW = "row"  # the first row, or None
    ROWS = "rows"
    VALUE = "value"  # the first column of the first row, or None


class Query(NamedTuple):
    # A tuple, not a dataclass: one is made for every statement, and a frozen dataclass's
    # __init__ costs a few microseconds on the writer thread.
    text: str  # `$n` placeholders and `{token}`s (see the module docstring)
    params: tuple[Any, ...]
    want: Want


class KeyLock(NamedTuple):
    """Serialise the transactions that take the same key until they end (PostgreSQL: an advisory
    lock; SQLite: nothing, its one writer runs one transaction at a time)."""

    key: str


class Changed(NamedTuple):
    """The job changed: waiters on it wake once the transaction commits (a tuple like Query: one
    is made for every callback that changes a job)."""

    job_id: str


Step = Query | KeyLock | Changed
Plan = Generator[Step, Any, T]
PlanFactory = Callable[[], Plan[T]]


class Run(Generic[T]):
    """A plan being run by an adapter: `step` is what it asks for next (None once it returned
    `result`); `answer` hands it the step's result and moves it on."""

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self.step: Step | None = None
        self._result: T | None = None
        self.answer(None)

    def answer(self, result: Any) -> None:
        try:
            self.step = self._plan.send(result)
        except StopIteration as done:
            self.step, self._result = None, done.value

    @property
    def result(self) -> T:
        assert self.step is None, "the plan has not returned yet"
        return self._result  # type: ignore[return-value]  # set by the plan's return


_new_tuple = tuple.__new__


class _Asking(Protocol):
    def __call__(self, text: str, *params: Any) -> Query: ...


def _asking(want: Want) -> _Asking:
    """The step builder for queries that want `want` back: `count("UPDATE …", a, b)`."""

    def build(text: str, *params: Any) -> Query:
        # tuple.__new__ directly: a NamedTuple's own __new__ is one more Python call per statement.
        return _new_tuple(Query, (text, params, want))

    return build


execute = _asking(Want.NOTHING)
count = _asking(Want.COUNT)
one_row = _asking(Want.ROW)
all_rows = _asking(Want.ROWS)
value = _asking(Want.VALUE)
new_id = _asking(Want.NEW_ID)


_TOKEN = re.compile(r"\{(\w+)\}")
_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Dialect:
    """How one database spells what the statements leave open."""

    tokens: Mapping[str, str]  # every `{token}` (see the module docstring)
    question_marks: bool  # `$n` placeholders written `?n` (SQLite)
    #: Statement texts already translated (the SQLite writer looks them up directly).
    translated: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, text: str) -> str:
        """`text` in this database's SQL (translated once per statement text)."""
        done = self.translated.get(text)
        if done is None:
            done = _TOKEN.sub(lambda m: self.tokens[m[1]], text)
            if self.question_marks:
                done = _PLACEHOLDER.sub(r"?\1", done)
            self.translated[text] = done
        return done
