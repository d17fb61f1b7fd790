"""core/state.py: the session's state machine as a table, and Session going through it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from phpsess import php
from phpsess.core.state import STATUS, TRANSITIONS, Event, Phase, Status, allowed, next_phase
from phpsess.errors import SessionStateError
from tests.test_session import Site

SESSION_PY = Path(__file__).resolve().parent.parent / "phpsess" / "session" / "session.py"


def test_every_phase_has_a_status_and_fail_leads_home() -> None:
    for phase in Phase:
        assert STATUS[phase] in (Status.NONE, Status.ACTIVE)
        assert next_phase(phase, Event.FAIL) is Phase.NONE
    assert STATUS[Phase.NONE] is Status.NONE


@pytest.mark.parametrize(("phase", "event"), [
    (Phase.NONE, Event.READ), (Phase.NONE, Event.CLOSE), (Phase.NONE, Event.DESTROY),
    (Phase.PENDING, Event.UNLOCK), (Phase.MERGING, Event.UNLOCK), (Phase.OPENING, Event.CLOSE),
    (Phase.PENDING, Event.OPEN), (Phase.NONE, Event.REGENERATE),
])
def test_an_illegal_event_raises(phase: Phase, event: Event) -> None:
    assert not allowed(phase, event)
    with pytest.raises(SessionStateError) as info:
        next_phase(phase, event)
    assert info.value.status is phase and info.value.action is event


def test_every_phase_is_reachable_and_can_end_without_failing() -> None:
    reached = {Phase.NONE}
    for _ in Phase:
        reached |= {to for (frm, _e), to in TRANSITIONS.items() if frm in reached}
    assert reached == set(Phase)
    ends = {Phase.NONE}
    for _ in Phase:
        ends |= {frm for (frm, e), to in TRANSITIONS.items() if to in ends and e is not Event.FAIL}
    assert ends == set(Phase)


def test_session_changes_phase_only_through_the_table() -> None:
    """The one assignment to ``phase`` outside __init__ is in ``Session._go``."""
    tree = ast.parse(SESSION_PY.read_text())
    where = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr in ("phase", "status"):
                        where.append(fn.name)
    assert sorted(where) == ["__init__", "_go"]


def test_phases_of_a_locked_session() -> None:
    site = Site()
    seen = []

    def page() -> None:
        s = php.current_request().session
        seen.append(s.phase)
        php.session_start()
        seen.append(s.phase)
        php.session_write_close()
        seen.append(s.phase)

    site.request(page)
    assert seen == [Phase.NONE, Phase.LOCKED, Phase.NONE]


def test_lazy_start_is_the_pending_phase() -> None:
    site = Site(lazy_start=1)
    seen = []

    def page() -> None:
        s = php.current_request().session
        php.session_start()
        seen.append((s.phase, php.session_status()))
        php.SESSION["n"] = 1
        seen.append((s.phase, php.session_status()))

    site.request(page)
    assert seen == [(Phase.PENDING, php.PHP_SESSION_ACTIVE), (Phase.LOCKED, php.PHP_SESSION_ACTIVE)]


def test_merge_mode_is_the_merging_phase() -> None:
    site = Site(concurrency="merge")
    seen = []

    def page() -> None:
        s = php.current_request().session
        php.session_start()
        seen.append((s.phase, php.session_status()))
        php.session_regenerate_id()
        seen.append(s.phase)
        php.session_destroy()
        seen.append(s.phase)

    site.request(page)
    assert seen == [(Phase.MERGING, php.PHP_SESSION_ACTIVE), Phase.MERGING, Phase.NONE]


def test_the_index_table_is_the_transition_table() -> None:
    from phpsess.core.state import NEXT_PHASE

    for phase in Phase:
        for event in Event:
            assert NEXT_PHASE[phase][event] is TRANSITIONS.get((phase, event))


def test_session_refuses_an_event_the_table_does_not_allow() -> None:
    site = Site()

    def page() -> None:
        s = php.current_request().session
        with pytest.raises(SessionStateError):
            s._go(Event.CLOSE)  # nothing to close
        assert s.phase is Phase.NONE

    site.request(page)
