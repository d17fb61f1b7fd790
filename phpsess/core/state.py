"""The session's state machine, as a table. No I/O.

PHP shows three statuses (``session_status()``: DISABLED, NONE, ACTIVE).  phpsess's
session goes through more phases, because it can start lazily and merge instead of
holding the lock; every change of phase is an :class:`Event` looked up in
:data:`TRANSITIONS`, and an event the table does not allow raises
:class:`~phpsess.errors.SessionStateError`.

Phases, and what each holds of the save handler:

* NONE: no session (never started, written and closed, aborted, destroyed, failed).
* OPENING: ``session_start()`` is under way: the handler is open, the id being chosen;
  nothing read yet (PHP's status is already ACTIVE here, so a user handler that asks
  sees ACTIVE).
* PENDING: lazy start (``session.lazy_start``): started, id and cookie chosen, the
  handler open but nothing read or locked until ``$_SESSION`` is first used.
* LOCKED: read; the handler holds the session's lock until the session closes.
* MERGING: merge mode (``session.concurrency = merge``): read, the lock already
  released; the write takes it again briefly and merges (:mod:`phpsess.core.merge`).

Events, and what they do to the handler:

* OPEN: ``open()`` (again, for ``session_reset()``).  DEFER: nothing more for now.
* READ: ``read()``, which takes the lock.  UNLOCK: ``close()`` right after the read.
* REGENERATE: write or destroy the old id, ``close()``, ``open()``, ``create_sid()``,
  ``read()`` the new id (which locks it).
* CLOSE: ``write()``/``update_timestamp()`` (or nothing: abort, read_and_close),
  then ``close()``.  DESTROY: ``destroy()``, ``close()``.
* FAIL: whatever step failed; the handler is closed.  Allowed from every phase.
"""

from __future__ import annotations

import enum
from typing import Final

from ..errors import SessionStateError

__all__ = ["Status", "Phase", "Event", "TRANSITIONS", "NEXT_PHASE", "STATUS", "next_phase", "allowed"]


class Status(enum.IntEnum):
    """PHP's session status constants (``session_status()``)."""

    DISABLED = 0  # PHP_SESSION_DISABLED
    NONE = 1  # PHP_SESSION_NONE
    ACTIVE = 2  # PHP_SESSION_ACTIVE


class Phase(enum.IntEnum):
    """Where a session is in its life (the module docstring says what each holds).

    IntEnum, not Enum: looking a (phase, event) pair up in the table hashes both at C
    speed (Enum's ``__hash__`` is Python code, run on every change of phase).
    """

    NONE = 0
    OPENING = 1
    PENDING = 2
    LOCKED = 3
    MERGING = 4


class Event(enum.IntEnum):
    """Everything that changes a session's phase."""

    OPEN = 0
    DEFER = 1
    READ = 2
    UNLOCK = 3
    REGENERATE = 4
    CLOSE = 5
    DESTROY = 6
    FAIL = 7


P, E = Phase, Event
TRANSITIONS: Final[dict[tuple[Phase, Event], Phase]] = {
    (P.NONE, E.OPEN): P.OPENING,
    (P.LOCKED, E.OPEN): P.OPENING,  # session_reset()
    (P.MERGING, E.OPEN): P.OPENING,
    (P.OPENING, E.DEFER): P.PENDING,
    (P.OPENING, E.READ): P.LOCKED,
    (P.PENDING, E.READ): P.LOCKED,
    (P.LOCKED, E.UNLOCK): P.MERGING,
    (P.LOCKED, E.REGENERATE): P.LOCKED,
    (P.MERGING, E.REGENERATE): P.MERGING,
    (P.PENDING, E.CLOSE): P.NONE,
    (P.LOCKED, E.CLOSE): P.NONE,
    (P.MERGING, E.CLOSE): P.NONE,
    (P.OPENING, E.DESTROY): P.NONE,  # a payload that does not decode destroys the session
    (P.LOCKED, E.DESTROY): P.NONE,
    (P.MERGING, E.DESTROY): P.NONE,
    **{(phase, E.FAIL): P.NONE for phase in Phase},
}
del P, E

#: what ``session_status()`` says in each phase
STATUS: Final[dict[Phase, Status]] = {
    Phase.NONE: Status.NONE,
    Phase.OPENING: Status.ACTIVE,
    Phase.PENDING: Status.ACTIVE,
    Phase.LOCKED: Status.ACTIVE,
    Phase.MERGING: Status.ACTIVE,
}


#: TRANSITIONS as a list per phase indexed by event (None: not allowed), for next_phase:
#: an index instead of hashing two enum members at every change of phase
NEXT_PHASE: Final[list[list[Phase | None]]] = [[TRANSITIONS.get((p, e)) for e in Event] for p in Phase]


def allowed(phase: Phase, event: Event) -> bool:
    """True when ``event`` may happen in ``phase``."""
    return (phase, event) in TRANSITIONS


def next_phase(phase: Phase, event: Event) -> Phase:
    """The phase after ``event``.

    :raises SessionStateError: the table does not allow ``event`` in ``phase``.
    """
    after = NEXT_PHASE[phase][event]
    if after is None:
        raise SessionStateError(phase, event)
    return after
