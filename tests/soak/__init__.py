"""Long-running hardening scripts (issue 7): faults, hostile input, load.

Not collected by pytest (no ``test_*.py`` here).  Each ``soak_*.py`` is a
script with ``--help``; run from the repository root, e.g.
``python -m tests.soak.soak_kill --handler files --kills 1000``.  The short
versions that the default test command runs are in
``tests/integration/test_faults.py``, ``tests/integration/test_hostile.py``
and ``tests/test_security.py``; ``docs/reliability.md`` has the figures.
"""

from __future__ import annotations

__all__: list[str] = []
