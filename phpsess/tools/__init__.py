"""The ``phpsess`` command and the operations tools behind it."""
