"""Save handlers (files, redis, memory, user) and the lock primitives they share. Storage I/O."""
