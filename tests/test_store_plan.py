"""plan_event's rules as properties, and the SQLite store replaying random event streams the same way."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callback_server.store import ApplyOutcome, Job, StatusEvent, Store, plan_event
from callback_server.store.base import JOB_COLUMNS, job_changes, job_params, scoped_to_attempt
from callback_server.store.sqlite import SqliteDatabase
from orfeas_contract.status import JobStatus

events = st.builds(
    StatusEvent,
    job_id=st.just("j"),
    status=st.sampled_from(list(JobStatus)),
    dedupe_key=st.sampled_from([f"k{i}" for i in range(8)]),
    progress=st.one_of(st.none(), st.fixed_dictionaries({"fraction": st.floats(0, 1)})),
    output=st.one_of(st.none(), st.integers(0, 9)),
    attempt=st.one_of(st.none(), st.integers(0, 3)),
    known=st.booleans(),
    run_id=st.one_of(st.none(), st.sampled_from(["r1", "r2", "r10"])),  # "r10" sorts after "r2"
)


Step = tuple[Job | None, StatusEvent, ApplyOutcome, Job | None]


def steps(stream: list[StatusEvent], *, scoped: bool = False) -> Iterator[Step]:
    """Each event of `stream` through plan_event in memory: (job before, event, outcome, job to
    store); `scoped`: keys scoped to the attempt first, as a store does."""
    job: Job | None = None
    seen: set[str] = set()
    for n, given_event in enumerate(stream):
        event = scoped_to_attempt(given_event, job) if scoped else given_event
        outcome, new = plan_event(job, event, seen=event.dedupe_key in seen, now=1000.0 + n)
        if outcome is not ApplyOutcome.DUPLICATE:
            seen.add(event.dedupe_key)
        yield job, event, outcome, new
        if new is not None:
            job = new


def replay(stream: list[StatusEvent]) -> tuple[Job | None, list[ApplyOutcome]]:
    """Apply a stream in memory as a store would: the final job and every outcome."""
    job: Job | None = None
    outcomes = []
    for _, _, outcome, new in steps(stream, scoped=True):
        job = new or job
        outcomes.append(outcome)
    return job, outcomes


@given(st.lists(events, min_size=1, max_size=30))
def test_state_never_moves_back_without_a_higher_attempt(stream: list[StatusEvent]) -> None:
    """Across any stream: the rank only drops, and a terminal state is only left, when the attempt rises."""
    for job, _, outcome, new in steps(stream):
        if job is not None and new is not None:
            attempt_rose = new.attempt > job.attempt
            assert attempt_rose or new.status.rank >= job.status.rank
            assert attempt_rose or not job.status.is_terminal
            assert new.attempt >= job.attempt
            assert new.updated_at > job.updated_at
        if outcome in (ApplyOutcome.DUPLICATE, ApplyOutcome.STALE, ApplyOutcome.NOTED):
            assert new is None


@given(st.lists(events, min_size=1, max_size=30))
def test_job_changes_name_every_column_that_differs(stream: list[StatusEvent]) -> None:
    """The columns job_changes names, written over the old row with its values, give the new job's row."""
    for job, _, _, new in steps(stream):
        if job is None or new is None:
            continue
        columns, params = job_changes(job, new)
        row = dict(zip(JOB_COLUMNS, job_params(job), strict=True))
        row.update(zip(columns, params, strict=True))
        assert tuple(row[c] for c in JOB_COLUMNS) == job_params(new)
        assert "id" not in columns


@given(st.lists(events, min_size=1, max_size=30))
def test_no_event_of_a_run_the_job_moved_past_applies(stream: list[StatusEvent]) -> None:
    """Across any stream, within one attempt: an applied event of a worker run is of the job's run or
    a later one (never an older run, nor the run of an earlier attempt), and the job then holds it."""
    for job, event, outcome, new in steps(stream):
        if job is None or event.run_id is None or outcome is not ApplyOutcome.APPLIED:
            continue
        if event.attempt not in (None, job.attempt):
            continue  # a retry: the one way back, whatever run it names
        assert new is not None
        if job.run_id is not None:
            assert (len(event.run_id), event.run_id) >= (len(job.run_id), job.run_id)
            assert event.run_id != job.run_id or job.run_attempt == job.attempt
        assert (new.run_id, new.run_attempt) == (event.run_id, job.attempt)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=20))
def test_sqlite_store_matches_the_rules(stream: list[StatusEvent]) -> None:
    """The SQLite store, fed a stream one event at a time, gives plan_event's outcomes and final job."""
    expected_job, expected_outcomes = replay(stream)

    async def run() -> tuple[Job | None, list[ApplyOutcome]]:
        with tempfile.TemporaryDirectory() as tmp:
            async with Store(SqliteDatabase(str(Path(tmp) / "p.db"))) as store:
                outcomes = [await store.apply_event(e) for e in stream]
                return await store.get_job("j"), outcomes

    job, outcomes = asyncio.run(run())
    assert outcomes == expected_outcomes
    assert job is not None
    assert expected_job is not None
    assert (job.status, job.progress, job.output, job.attempt, job.run_id) == (
        expected_job.status,
        expected_job.progress,
        expected_job.output,
        expected_job.attempt,
        expected_job.run_id,
    )
