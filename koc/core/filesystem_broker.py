"""kombu's filesystem transport with its exchange tables read and written under one lock.

Stock kombu (5.x) creates an exchange table file empty and locks it only afterwards; a second
process binding at that moment opens the empty file, reads "" and dies with a JSONDecodeError
(celery/kombu#1551). In the embedded set-up the web process, the worker and its beat scheduler
all bind the same exchanges as they start, so `make demo` could lose its worker on start.

Every read, bind and unbind of an exchange table here first takes an flock on one lock file in
the control folder, shared for reads and exclusive for writes, so no process ever sees a table
between its creation and its first write.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import filesystem

LOCK_FILE = ".exchanges.lock"


class Channel(filesystem.Channel):
    @contextmanager
    def _tables_locked(self, mode: int) -> Iterator[None]:
        self.control_folder.mkdir(parents=True, exist_ok=True)
        # A new open file per call: flock excludes other descriptors, threads included.
        with (self.control_folder / LOCK_FILE).open("a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), mode)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def get_table(self, exchange: str) -> Any:
        with self._tables_locked(fcntl.LOCK_SH):
            return super().get_table(exchange)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        with self._tables_locked(fcntl.LOCK_EX):
            super()._queue_bind(exchange, routing_key, pattern, queue)

    def _delete(self, queue: str, exchange: str, routing_key: str, pattern: str,
                *args: Any, **kwargs: Any) -> None:
        with self._tables_locked(fcntl.LOCK_EX):
            super()._delete(queue, exchange, routing_key, pattern, *args, **kwargs)


class Transport(filesystem.Transport):
    Channel = Channel
    # The stock transport's broker state is class-level; share it rather than fork it.
    global_state = filesystem.Transport.global_state
