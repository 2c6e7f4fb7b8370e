"""In-process evaluation: predict() stays in the process that ran fit().

With ``in_process = true`` the fitted Model never leaves the process that fitted
it.  That process serves predictions on a local socket (a daemon thread, one
request at a time); the strategy's copies in the executor's workers (forked or
unpickled) send it their pseudo-experiment's columns and get the parsed answer
back.  The workers still draw the pseudo-experiments in parallel; only the
submission's ``predict`` is serialised.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Listener
from typing import Any

Handler = Callable[[Any], Any]


class ParentServer:
    """Answers requests with ``handler(request)`` on an authenticated local socket."""

    def __init__(self, handler: Handler, name: str = "challenge-submission"):
        self._handler = handler
        self._authkey = os.urandom(32)
        self._listener = Listener(family="AF_UNIX", backlog=64, authkey=self._authkey)
        self.address = self._listener.address
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"{name} predictions",
                                        daemon=True)
        self._thread.start()

    def client(self) -> ParentClient:
        return ParentClient(self.address, self._authkey)

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except Exception:  # noqa: BLE001 - a failed handshake, or the listener closed
                if self._closed:
                    return
                continue
            with conn:
                try:
                    request = conn.recv()
                except Exception:  # noqa: BLE001 - the worker went away
                    continue
                reply = self._handler(request)
                try:
                    conn.send(reply)
                except Exception as exc:  # noqa: BLE001 - an answer that does not pickle
                    try:
                        conn.send(("error", "RuntimeError", f"the answer does not pickle: {exc}"))
                    except Exception:  # noqa: BLE001
                        pass

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass


class ParentClient:
    """The worker side: one connection per request (picklable, no socket held)."""

    def __init__(self, address: str, authkey: bytes):
        self.address = address
        self.authkey = authkey

    def call(self, request: Any) -> Any:
        with Client(self.address, family="AF_UNIX", authkey=self.authkey) as conn:
            conn.send(request)
            return conn.recv()


__all__ = ["ParentClient", "ParentServer"]
