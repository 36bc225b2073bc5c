"""The start and the stop of a serving process (docs/deploy.md, "Restarts").

At start, a process on the in-memory channel layer is the only one: every reply still
`streaming` was being written by a process that is gone, and is marked `interrupted` at
once (with a shared layer, another process may be writing it: leases decide).

On SIGTERM or SIGINT the process drains: new turns are refused (`server_restarting`),
sockets that follow no reply written here close with 1012 (the page reconnects, to another
process behind the proxy when there is one), running replies go on for up to
`CHAT_SHUTDOWN_GRACE` seconds and are then saved `interrupted` with every delta sent so
far, each socket that followed one closes with 1012 once its `done` has reached it, the
rest are closed, and the process exits. A second signal ends
the grace at once; the replies are still saved.

The hook: Daphne has no ASGI lifespan, and its own "before shutdown" trigger cancels every
socket's consumer at once, which would cut the pages off the replies they follow during
the grace. So the drain starts from our own SIGTERM/SIGINT handlers, installed once
Twisted's reactor runs (over Twisted's own, which only stop the reactor), and stops the
reactor itself when it is done; Daphne's trigger then finds nothing left to cancel.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings
from django.db import connection

from conversations import layers, services
from conversations.generation import registry

logger = logging.getLogger(__name__)

# The close code of a socket whose server restarts: "Service Restart" (RFC 6455 registry).
CLOSE_SERVICE_RESTART = 1012
# How long the drain waits for the pages to take their close frames before it stops.
CLOSE_WAIT_SECONDS = 2.0
# How long a socket that relays a reply saved by the drain has to receive its `done` (a
# round trip through Redis on a shared layer) and close itself, before it is closed.
DONE_WAIT_SECONDS = 2.0


class Socket(Protocol):
    def restart_soon(self, *, final: bool) -> None: ...


class Sockets:
    """The conversation sockets open in this process."""

    def __init__(self) -> None:
        self._open: set[Socket] = set()
        # Made by `closed` in the loop that waits (an Event made at import would belong to
        # whichever loop used it first).
        self._emptied: asyncio.Event | None = None

    def add(self, socket: Socket) -> None:
        self._open.add(socket)

    def discard(self, socket: Socket) -> None:
        self._open.discard(socket)
        if not self._open and self._emptied is not None:
            self._emptied.set()

    def __len__(self) -> int:
        return len(self._open)

    def restart_all(self, *, final: bool) -> None:
        for socket in list(self._open):
            socket.restart_soon(final=final)

    async def closed(self, timeout: float) -> None:
        if not self._open:
            return
        self._emptied = asyncio.Event()
        try:
            await asyncio.wait_for(self._emptied.wait(), timeout)
        except TimeoutError:
            logger.info("%d socket(s) still open when the process stops", len(self._open))
        finally:
            self._emptied = None


sockets = Sockets()


class Drain:
    """What SIGTERM and SIGINT start; `stop_server` ends the process once it is done."""

    def __init__(self, stop_server: Callable[[], Any], grace: float) -> None:
        self.stop_server = stop_server
        self.grace = grace
        self.hurry = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def on_signal(self, signum: int) -> None:
        """In the event loop. The first signal drains; the next ones end the grace."""
        if self.task is None:
            logger.info(
                "%s: draining (new turns refused, up to %.0f s for the replies being written)",
                signal.Signals(signum).name,
                self.grace,
            )
            self.task = asyncio.ensure_future(self.run())
        else:
            logger.info(
                "%s again: saving the replies and stopping now", signal.Signals(signum).name
            )
            self.hurry.set()

    async def run(self) -> None:
        try:
            # New turns are refused from here on (the registry's `draining`).
            registry.draining = True
            sockets.restart_all(final=False)
            await registry.drain(self.grace, self.hurry)
            # The sockets still open relay a reply written here: each closes itself once
            # that reply's `done` reaches it (consumers' `_relay`). Closed before it, a page
            # would miss the end of the text it was shown.
            await sockets.closed(DONE_WAIT_SECONDS)
            sockets.restart_all(final=True)
            await sockets.closed(CLOSE_WAIT_SECONDS)
        except Exception:
            logger.exception("Draining failed; stopping all the same")
        finally:
            self.stop_server()


def recover_at_start() -> None:
    """Mark the replies of a previous process interrupted, when this process is the only
    one (see the module's docstring). In its own thread: the ORM is synchronous, and this
    runs before the first connection is accepted."""
    if layers.is_shared():
        return

    def run() -> None:
        try:
            services.replies.interrupt_orphans()
        except Exception:
            logger.exception("Marking the replies of the previous process interrupted failed")
        finally:
            connection.close()

    worker = threading.Thread(target=run, name="recover-at-start")
    worker.start()
    worker.join()


# Close codes of the IANA registry that this app sends: 1012 "Service Restart" (the drain)
# and 1013 "Try Again Later" (the channel layer is down, see consumers.CLOSE_TRY_AGAIN).
REGISTERED_CLOSE_CODES = frozenset({1012, 1013})


def allow_registered_close_codes() -> None:
    """Let Daphne's websocket library send 1012 and 1013.

    Autobahn refuses any server close code but 1000 and 3000-4999 (it raises, and Daphne
    then drops the socket as 1011, an error), although the IANA registry defines 1012 and
    1013 for exactly these cases and browsers hand them to the page. For those two codes
    only, the close frame is sent as Autobahn's own `sendClose` would, without that check.
    """
    protocol = sys.modules.get("autobahn.websocket.protocol")
    if protocol is None:
        return
    cls = protocol.WebSocketProtocol
    original = cls.sendClose
    if getattr(original, "allows_registered_codes", False):
        return

    def send_close(self: Any, code: int | None = None, reason: str | None = None) -> None:
        if code in REGISTERED_CLOSE_CODES and reason is None:
            self.sendCloseFrame(code=code, reasonUtf8=None, isReply=False)
        else:
            original(self, code, reason)

    send_close.allows_registered_codes = True  # type: ignore[attr-defined]
    cls.sendClose = send_close


def purge_at_start() -> None:
    """Remove the attachments uploaded but never sent (`manage.py purge_attachments`), in a
    thread of its own: files may be in S3, and the loop serves meanwhile."""

    def run() -> None:
        try:
            services.attachments.purge_unsent()
        except Exception:
            logger.exception("Removing attachments that were never sent failed")
        finally:
            connection.close()

    threading.Thread(target=run, name="purge-attachments", daemon=True).start()


def install() -> None:
    """Under Daphne: recover at start, drain on SIGTERM/SIGINT, send 1012 and 1013.

    Daphne installs Twisted's asyncio reactor before it imports the application, so the
    reactor is known here but not running yet. Elsewhere (tests that import the
    application, another server) this does nothing.
    """
    allow_registered_close_codes()
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or reactor.running:
        return
    reactor.callWhenRunning(_started, reactor)


def _started(reactor: Any) -> None:
    # Twisted has just installed its signal handlers (they stop the reactor at once):
    # ours replace them.
    recover_at_start()
    purge_at_start()
    drain = Drain(reactor.stop, settings.CHAT_SHUTDOWN_GRACE)

    def handle(signum: int, frame: Any) -> None:
        reactor.callFromThread(drain.on_signal, signum)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
