#!/usr/bin/env python3
"""Runs moto's server (the SQS emulator of the liveops-sqs tests) with one speed-up.

moto 5.2 recomputes every attribute of a queue, its three message counts included (a scan of
every message in the queue), several times for each message it stores or hands out, only to
read ContentBasedDeduplication or MessageRetentionPeriod: n messages cost O(n^2), and the bus
conformance suite (1600 messages in one queue) took over 15 minutes. While SendMessage(Batch)
and ReceiveMessage run, this wrapper hands those reads the two attributes they need. Nothing
else changes: GetQueueAttributes still reports the counts.
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

    return wrapper


models.Queue.attributes = property(_attributes)
models.SQSBackend.send_message = _storing(models.SQSBackend.send_message)
models.SQSBackend.send_message_batch = _storing(models.SQSBackend.send_message_batch)
models.SQSBackend.receive_message = _storing(models.SQSBackend.receive_message)

if __name__ == "__main__":
    sys.exit(main())
