#!/usr/bin/env python3
"""Runs moto's server (the SQS emulator of the liveops-sqs tests) with one speed-up and a long
poll closer to SQS's.

Speed-up: moto 5.2 recomputes every attribute of a queue, its three message counts included (a
scan of every message in the queue), several times for each message it stores or hands out,
only to read ContentBasedDeduplication or MessageRetentionPeriod: n messages cost O(n^2), and
the bus conformance suite (1600 messages in one queue) took over 15 minutes. While
SendMessage(Batch) and ReceiveMessage run, this wrapper hands those reads the two attributes
they need. Nothing else changes: GetQueueAttributes still reports the counts.

Long poll: between two looks at the queue, moto 5.2's ReceiveMessage waits until some message
is visible, so while every visible message belongs to a FIFO message group in flight it looks
again at once, holding a core (and Python's lock) for the whole wait; and it keeps the groups in
flight as they were when the call began, so a group whose message was deleted meanwhile stays
locked until the wait ends, where SQS hands its next message out at once. The bus long-polls
whenever it has nothing in hand (a second at least), so both mattered. Here a long poll looks
again when a message is sent or every 50 ms, each time with the groups in flight now (it holds
nothing yet then: moto answers as soon as it has one).
"""

import sys
import threading

from moto.server import main
from moto.sqs import models

_cheap = threading.local()
_full = models.Queue.attributes


def _attributes(self):
    if getattr(_cheap, "on", False):
        value = getattr(self, "content_based_deduplication", False)
        if isinstance(value, bool):
            value = str(value).lower()
        return {
            "ContentBasedDeduplication": value,
            "MessageRetentionPeriod": self.message_retention_period,
        }
    return _full.fget(self)


def _storing(method):
    def wrapper(*args, **kwargs):
        outer = getattr(_cheap, "on", False)
        _cheap.on = True
        try:
            return method(*args, **kwargs)
        finally:
            _cheap.on = outer
            _receiving.pending = None

    return wrapper


models.Queue.attributes = property(_attributes)

# The groups in flight of the ReceiveMessage running on this thread (moto serves each request on
# a thread of its own), which its long poll looks at.
_receiving = threading.local()
_pending = models.Queue.pending_message_groups


class _Pending(set):
    """A queue's groups in flight; receive_message takes a deepcopy at its start, and that copy
    is what a long poll brings up to date between its looks."""

    def __init__(self, queue, groups):
        super().__init__(groups)
        self.queue = queue

    def __deepcopy__(self, memo):
        copy = _Pending(self.queue, self)
        _receiving.pending = copy
        return copy


def _pending_message_groups(self):
    return _Pending(self, _pending.fget(self))


def _wait_for_messages(self, timeout):
    with self._messages_lock:
        self._messages_lock.wait(timeout=min(timeout, 0.05))
    pending = getattr(_receiving, "pending", None)
    if pending is not None and pending.queue is self:
        pending.clear()
        pending.update(_pending.fget(self))


models.Queue.pending_message_groups = property(_pending_message_groups)
models.Queue.wait_for_messages = _wait_for_messages
models.SQSBackend.send_message = _storing(models.SQSBackend.send_message)
models.SQSBackend.send_message_batch = _storing(models.SQSBackend.send_message_batch)
models.SQSBackend.receive_message = _storing(models.SQSBackend.receive_message)

if __name__ == "__main__":
    sys.exit(main())
