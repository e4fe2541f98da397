"""A call made once, by whichever thread comes first; the others wait for it."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Once:
    """Calls ``fn`` the first time it is called, from whichever thread; later calls wait for it and return."""

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if not self._done and self._fn is not None:
                self._fn()
            self._done = True
