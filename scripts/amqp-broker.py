#!/usr/bin/env python3
"""A small in-memory AMQP 1.0 broker (Debian's python3-qpid-proton) for the liveops-servicebus
tests, addressed the way Azure Service Bus addresses its entities. Throw-away: nothing is stored
on disk; loopback only.

Addresses:
  <topic>                                   send here; a copy goes to every subscription of the
                                            topic (only to <group> when the message carries the
                                            application property liveops-replay-group=<group>).
                                            Messages sent while a topic has no subscription wait
                                            for its first one (Azure drops them instead).
  <topic>/Subscriptions/<group>             a subscription queue, created by the first link
                                            attached to it.
  <entity>/$deadletterqueue                 an entity's dead letters.
  <entity>/$management                      request/response node: operation
                                            "liveops:message-count" answers {"active": n,
                                            "dead-letter": m} (an extension of this broker;
                                            Service Bus has no such AMQP operation).
  anything else                             a plain queue, created on first use.

Outcomes from receivers: accepted removes the message; released puts it back in its place;
modified puts it back and, with delivery-failed, counts one more delivery (the header's
delivery-count); rejected moves it to <entity>/$deadletterqueue with the application properties
DeadLetterReason and DeadLetterErrorDescription taken from the error's info, as Service Bus
does. Deliveries still unsettled when their link or connection goes away are put back, counting
one more delivery, also when the peer vanished without closing (kill -9). Not implemented
(Service Bus only): $cbs, sessions, duplicate detection, lock expiry, renew-lock.

LIVEOPS_AMQP_BROKER_DEBUG=<file> appends every queue's counts (entries, in flight, consumers)
to <file> every 2 s.
"""

import argparse
import itertools
import os
import sys

from proton import Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import Container

SUBS = "/Subscriptions/"
DLQ = "/$deadletterqueue"
MGMT = "/$management"
REPLAY = "liveops-replay-group"

_seq = itertools.count()


def copy(message):
    m = Message()
    m.decode(message.encode())
    return m


class Entry:
    __slots__ = ("seq", "message", "count", "link")

    def __init__(self, message, count=0):
        self.seq = next(_seq)
        self.message = message
        self.count = count
        self.link = None  # the link it is in flight on


class Queue:
    def __init__(self, address):
        self.address = address
        self.entries = []  # ordered by seq
        self.consumers = []

    def put(self, entry):
        self.entries.append(entry)
        self.entries.sort(key=lambda e: e.seq)

    def active(self):
        return len(self.entries)


class Broker(MessagingHandler):
    def __init__(self, url):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=True)
        self.url = url
        self.queues = {}
        self.backlog = {}  # topic -> [message] sent before it had a subscription
        self.in_flight = {}  # delivery -> (queue, entry)
        self.responders = {}  # reply-to address -> sender link

    def on_start(self, event):
        self.acceptor = event.container.listen(self.url)
        print(f"amqp broker listening on {self.url}", flush=True)
        if os.environ.get("LIVEOPS_AMQP_BROKER_DEBUG"):
            event.container.schedule(2.0, self)

    def on_timer_task(self, event):
        with open(os.environ["LIVEOPS_AMQP_BROKER_DEBUG"], "a") as f:
            for a, q in self.queues.items():
                held = sum(1 for e in q.entries if e.link is not None)
                stale = sum(1 for e in q.entries if e.link is not None and e.link.connection.transport is None)
                f.write(f"{a}: {len(q.entries)} entries, {held} in flight ({stale} on gone connections), {len(q.consumers)} consumers\n")
            f.write("--\n")
        event.container.schedule(2.0, self)

    # -- entities -------------------------------------------------------------------------

    def queue(self, address):
        q = self.queues.get(address)
        if q is None:
            q = Queue(address)
            self.queues[address] = q
            if SUBS in address and not address.endswith(DLQ):
                topic = address.split(SUBS, 1)[0]
                waiting = self.backlog.pop(topic, [])
                for m in waiting:
                    q.put(Entry(copy(m)))
        return q

    def subscriptions(self, topic):
        prefix = topic + SUBS
        return [
            q
            for a, q in self.queues.items()
            if a.startswith(prefix) and "/" not in a[len(prefix):]
        ]

    def route(self, address, message):
        if address.endswith(MGMT):
            return self.manage(address[: -len(MGMT)], message)
        if SUBS in address or address.endswith(DLQ) or address.startswith("$"):
            q = self.queue(address)
            q.put(Entry(message))
            self.dispatch(q)
            return
        subs = self.subscriptions(address)
        props = message.properties or {}
        only = props.get(REPLAY)
        if only is not None:
            subs = [q for q in subs if q.address == f"{address}{SUBS}{only}"]
            if not subs:
                subs = [self.queue(f"{address}{SUBS}{only}")]
        if not subs:
            self.backlog.setdefault(address, []).append(message)
            return
        for q in subs:
            q.put(Entry(copy(message)))
            self.dispatch(q)

    def manage(self, entity, request):
        props = request.properties or {}
        op = props.get("operation")
        reply = Message(correlation_id=request.id, properties={})
        if op == "liveops:message-count":
            q = self.queues.get(entity)
            dlq = self.queues.get(entity + DLQ)
            waiting = len(self.backlog.get(entity, []))
            reply.properties = {"statusCode": 200, "statusDescription": "OK"}
            reply.body = {
                "active": (q.active() if q else 0) + waiting,
                "dead-letter": dlq.active() if dlq else 0,
            }
        else:
            reply.properties = {
                "statusCode": 501,
                "statusDescription": f"operation {op!r} is not implemented here",
            }
        link = self.responders.get(request.reply_to)
        if link is not None and link.credit > 0:
            link.send(reply)

    # -- links ----------------------------------------------------------------------------

    def on_link_opening(self, event):
        link = event.link
        if link.is_sender:
            address = link.remote_source.address or ""
            link.source.address = address
            link.target.address = link.remote_target.address
            if address.endswith(MGMT):
                self.responders[link.remote_target.address] = link
            else:
                q = self.queue(address)
                q.consumers.append(link)
        else:
            link.target.address = link.remote_target.address
            link.source.address = link.remote_source.address
            link.flow(1000)

    def on_sendable(self, event):
        address = event.link.source.address or ""
        q = self.queues.get(address)
        if q is not None:
            self.dispatch(q)

    def dispatch(self, q):
        for link in list(q.consumers):
            while link.credit > 0:
                entry = next((e for e in q.entries if e.link is None), None)
                if entry is None:
                    return
                entry.message.delivery_count = entry.count
                entry.message.first_acquirer = entry.count == 0
                delivery = link.send(entry.message)
                entry.link = link
                self.in_flight[delivery] = (q, entry)

    def on_message(self, event):
        address = event.link.target.address or event.link.remote_target.address or ""
        self.route(address, event.message)
        self.accept(event.delivery)
        if event.link.credit < 500:
            event.link.flow(1000 - event.link.credit)

    def settled(self, delivery, outcome):
        found = self.in_flight.pop(delivery, None)
        if found is None:
            return
        q, entry = found
        entry.link = None
        remote = delivery.remote
        if outcome == "accepted":
            q.entries.remove(entry)
        elif outcome == "rejected":
            q.entries.remove(entry)
            condition = remote.condition
            info = dict(condition.info or {}) if condition is not None else {}
            m = entry.message
            props = dict(m.properties or {})
            props["DeadLetterReason"] = str(info.get(symbol("DeadLetterReason"), info.get("DeadLetterReason", "")))
            props["DeadLetterErrorDescription"] = str(
                info.get(symbol("DeadLetterErrorDescription"), info.get("DeadLetterErrorDescription", ""))
            )
            m.properties = props
            dlq = self.queue(q.address + DLQ)
            dlq.put(Entry(m, entry.count))
            self.dispatch(dlq)
        else:  # released or modified
            if outcome == "modified" and remote.failed:
                entry.count += 1
        self.dispatch(q)

    def on_accepted(self, event):
        self.settled(event.delivery, "accepted")

    def on_rejected(self, event):
        self.settled(event.delivery, "rejected")

    def on_released(self, event):
        state = event.delivery.remote_state
        self.settled(event.delivery, "modified" if state == event.delivery.MODIFIED else "released")

    def drop_link(self, link):
        for q in self.queues.values():
            if link in q.consumers:
                q.consumers.remove(link)
        for key, value in list(self.responders.items()):
            if value is link:
                del self.responders[key]
        touched = set()
        for delivery, (q, entry) in list(self.in_flight.items()):
            if delivery.link is link:
                del self.in_flight[delivery]
                entry.link = None
                entry.count += 1
                touched.add(q.address)
        for address in touched:
            self.dispatch(self.queues[address])

    def on_link_remote_close(self, event):
        # The client detached: put back what it had not settled, and detach our end too.
        self.drop_link(event.link)
        event.link.close()

    def on_link_closing(self, event):
        self.drop_link(event.link)

    def drop_connection(self, connection):
        link = connection.link_head(0)
        while link:
            self.drop_link(link)
            link = link.next(0)
        # Whatever is still in flight on a link of this connection (a link proton no longer
        # lists, or one that never finished attaching) goes back too: a client killed mid-batch
        # must not take messages with it.
        touched = set()
        for delivery, (q, entry) in list(self.in_flight.items()):
            if delivery.link.connection == connection:
                del self.in_flight[delivery]
                entry.link = None
                entry.count += 1
                touched.add(q.address)
        for q in self.queues.values():
            q.consumers = [l for l in q.consumers if l.connection != connection]
        for address in touched:
            self.dispatch(self.queues[address])

    def on_connection_closing(self, event):
        self.drop_connection(event.connection)

    def on_disconnected(self, event):
        if event.connection is not None:
            self.drop_connection(event.connection)

    def on_transport_closed(self, event):
        # MessagingHandler reports on_disconnected only for a connection still open on our
        # side; a peer that vanished (kill -9) must release its deliveries either way.
        if event.connection is not None:
            self.drop_connection(event.connection)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15672)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("the test broker listens on loopback only")
    Container(Broker(f"{args.host}:{args.port}")).run()


if __name__ == "__main__":
    main()
