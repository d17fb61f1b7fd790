"""The session_status() state machine, as a table. No I/O.

What each action does to the save handler:

* START: open, read (the handler locks the id), decode. -> ACTIVE
* START_READ_AND_CLOSE: open, read, decode, close without writing (lock released). -> NONE
* WRITE_CLOSE: encode, write (or update_timestamp), close (lock released). -> NONE
* ABORT: close without writing. -> NONE
* DESTROY: destroy(id), close. -> NONE
* RESET: open again and re-read; the data read replaces $_SESSION. -> ACTIVE
* REGENERATE_ID: write/destroy old, close, open, create_sid, read new (locks it). -> ACTIVE
* UNSET, DECODE, GC: no state change, need ACTIVE.
* FAIL: a start or decode that failed part-way (handler already closed). -> NONE
"""

from __future__ import annotations

import enum

from ..errors import SessionStateError, caused_by

__all__ = ["Status", "Action", "TRANSITIONS", "next_status", "allowed"]


class Status(enum.IntEnum):
    """PHP's session status constants."""

    DISABLED = 0  # PHP_SESSION_DISABLED
    NONE = 1  # PHP_SESSION_NONE
    ACTIVE = 2  # PHP_SESSION_ACTIVE


class Action(enum.Enum):
    """Everything that can change session_status()."""

    START = "start"
    START_READ_AND_CLOSE = "start_read_and_close"
    WRITE_CLOSE = "write_close"
    ABORT = "abort"
    DESTROY = "destroy"
    RESET = "reset"
    REGENERATE_ID = "regenerate_id"
    UNSET = "unset"
    DECODE = "decode"
    GC = "gc"
    FAIL = "fail"


TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (Status.NONE, Action.START): Status.ACTIVE,
    (Status.NONE, Action.START_READ_AND_CLOSE): Status.NONE,
    (Status.ACTIVE, Action.WRITE_CLOSE): Status.NONE,
    (Status.ACTIVE, Action.ABORT): Status.NONE,
    (Status.ACTIVE, Action.DESTROY): Status.NONE,
    (Status.ACTIVE, Action.RESET): Status.ACTIVE,
    (Status.ACTIVE, Action.REGENERATE_ID): Status.ACTIVE,
    (Status.ACTIVE, Action.UNSET): Status.ACTIVE,
    (Status.ACTIVE, Action.DECODE): Status.ACTIVE,
    (Status.ACTIVE, Action.GC): Status.ACTIVE,
    (Status.ACTIVE, Action.FAIL): Status.NONE,
    (Status.NONE, Action.FAIL): Status.NONE,
}


def allowed(status: Status, action: Action) -> bool:
    """True when ``action`` may run in ``status``."""
    return (status, action) in TRANSITIONS


def next_status(status: Status, action: Action) -> Status:
    """The status after ``action``.

    :raises SessionStateError: the action is not allowed in ``status``.
    """
    try:
        return TRANSITIONS[status, action]
    except KeyError:
        raise caused_by(SessionStateError(status, action), None)
