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
  $cbs                                      claims-based security: "put-token" answers
                                            status-code 200 and records the token's audience
                                            (amqp://<host>/<entity>) and expiration for the
                                            connection; when that expiration passes without a
                                            newer token, the connection's links to <entity> are
                                            detached (amqp:unauthorized-access), as Service Bus
                                            does. The token itself is not checked, and links
                                            attach without one (tokens are only enforced by expiry).
  $liveops-detach/<entity>                  a message sent here detaches every receiving link of
                                            <entity> (amqp:link:detach-forced), keeping its
                                            connection: how the tests break one link (an
                                            extension of this broker). With the body "session"
                                            only the link holding the session named by the
                                            message's liveops-key property (else its group-id) is
                                            detached, as Service Bus detaches a link whose session
                                            lock was lost.
  anything else                             a plain queue, created on first use.

Sessions, as Service Bus has them: a receiving link whose source carries the filter
com.microsoft:session-filter (described 00000013:7000000C) locks one session (the messages' AMQP
group-id) of its queue and gets that session's messages only; the attach answer's filter names
the session. A null session id asks for the next unlocked session that has a message not in
flight: when there is none the attach is held until one is free, or until the link's
com.microsoft:timeout property (milliseconds; 60 s without it) has passed, and then refused (a
null source, then a detach with the condition com.microsoft:timeout). A named session that is
locked is refused at once (com.microsoft:session-cannot-be-locked). The lock is released when the
link goes away. Links without the filter get every message, sessions or not.

Outcomes from receivers: accepted removes the message; released puts it back in its place;
modified puts it back and, with delivery-failed, counts one more delivery (the header's
delivery-count); rejected moves it to <entity>/$deadletterqueue with the application properties
DeadLetterReason and DeadLetterErrorDescription taken from the error's info, as Service Bus
does. Deliveries still unsettled when their link or connection goes away are put back, counting
one more delivery, also when the peer vanished without closing (kill -9). Not implemented
(Service Bus only): token checks, duplicate detection, lock expiry, renew-lock and
renew-session-lock, session state.

LIVEOPS_AMQP_BROKER_DEBUG=<file> appends every queue's counts (entries, in flight, consumers)
to <file> every 2 s.
"""

import argparse
import itertools
import os
import sys
import time

from proton import Condition, Described, Message, Terminus, symbol, ulong
from proton.handlers import EndpointStateHandler, MessagingHandler
from proton.reactor import Container

SUBS = "/Subscriptions/"
DLQ = "/$deadletterqueue"
MGMT = "/$management"
CBS = "$cbs"
DETACH = "$liveops-detach/"
REPLAY = "liveops-replay-group"
SESSION_FILTER = symbol("com.microsoft:session-filter")
SESSION_FILTER_CODE = ulong(0x000000137000000C)
TIMEOUT = symbol("com.microsoft:timeout")
DEFAULT_SESSION_WAIT_MS = 60000

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
        self.locks = {}  # session id -> the link holding it
        self.waiting = []  # session links whose attach is held, oldest first

    def put(self, entry):
        self.entries.append(entry)
        self.entries.sort(key=lambda e: e.seq)

    def active(self):
        return len(self.entries)


def link_address(link):
    # The entity a link is for: its source when it sends to the peer, else its target.
    return (link.source.address if link.is_sender else link.target.address) or ""


def detach(link, condition, description):
    link.condition = Condition(condition, description)
    link.close()


def session_filter(link):
    """(True, session id or None) when the link's remote source carries the session filter,
    else (False, None)."""
    data = link.remote_source.filter
    data.rewind()
    if data.next() is None:
        return False, None
    filters = data.get_object() or {}
    if SESSION_FILTER not in filters:
        return False, None
    value = filters[SESSION_FILTER]
    if isinstance(value, Described):
        value = value.value
    return True, (str(value) if value is not None else None)


def group_of(entry):
    return entry.message.group_id


def session_to_detach(message):
    """The session a $liveops-detach message names (body "session"), else None: every link."""
    body = message.body
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body)
    if body not in (b"session", "session"):
        return None
    props = message.properties or {}
    return props.get("liveops-key") or message.group_id


class HoldingEndpoints(EndpointStateHandler):
    """MessagingHandler's endpoint handler, except that the broker may hold a link's attach
    (a session receiver waiting for a session) instead of answering it at once."""

    def __init__(self, broker, peer_close_is_error, delegate):
        super().__init__(peer_close_is_error, delegate)
        self.broker = broker

    def on_link_remote_open(self, event):
        if self.is_local_uninitialised(event.link) and self.broker.hold(event.link):
            return
        super().on_link_remote_open(event)


class HoldTimeout:
    def __init__(self, broker, link):
        self.broker = broker
        self.link = link

    def on_timer_task(self, event):
        self.broker.give_up(self.link)


class Expiry:
    """A timer task: the token put for `audience` on `connection`, valid until `expiration`
    (unix ms), may have expired."""

    def __init__(self, broker, connection, audience, expiration):
        self.broker = broker
        self.connection = connection
        self.audience = audience
        self.expiration = expiration

    def on_timer_task(self, event):
        self.broker.expire(self)


class Broker(MessagingHandler):
    def __init__(self, url):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=True)
        self.url = url
        self.queues = {}
        self.backlog = {}  # topic -> [message] sent before it had a subscription
        self.in_flight = {}  # delivery -> (queue, entry)
        self.responders = {}  # reply-to address -> sender link
        self.tokens = {}  # (connection container id, audience) -> expiration (unix ms)
        self.session_of = {}  # session link -> (queue, session id)
        self.handlers = [
            HoldingEndpoints(self, h.peer_close_is_error, h.delegate)
            if isinstance(h, EndpointStateHandler) else h
            for h in self.handlers
        ]

    def on_start(self, event):
        self.container = event.container
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
        self.respond(request, reply)

    def respond(self, request, reply):
        link = self.responders.get(request.reply_to)
        if link is not None and link.credit > 0:
            link.send(reply)

    # -- claims-based security ------------------------------------------------------------

    def put_token(self, connection, request):
        props = request.properties or {}
        reply = Message(correlation_id=request.id)
        audience = props.get("name")
        expiration = props.get("expiration")
        if props.get("operation") != "put-token" or audience is None or expiration is None:
            reply.properties = {"status-code": 400, "status-description": "not a put-token"}
        else:
            key = (connection.remote_container, audience)
            self.tokens[key] = int(expiration)
            self.expire_at(Expiry(self, connection, audience, int(expiration)))
            reply.properties = {"status-code": 200, "status-description": "OK"}
        self.respond(request, reply)

    def expire_at(self, expiry):
        delay = max(0.0, (expiry.expiration - time.time() * 1000) / 1000)
        self.container.schedule(delay + 0.01, expiry)

    def expire(self, expiry):
        connection, audience = expiry.connection, expiry.audience
        key = (connection.remote_container, audience)
        if self.tokens.get(key) != expiry.expiration:
            return  # renewed since (the newer token has its own timer), or already expired
        if expiry.expiration > time.time() * 1000:
            self.expire_at(expiry)  # the timer fired a little early
            return
        del self.tokens[key]
        if connection.state & connection.LOCAL_CLOSED:
            return
        parts = audience.split("/", 3)
        entity = parts[3] if len(parts) > 3 else ""
        link = connection.link_head(0)
        while link:
            following = link.next(0)
            if link_address(link) == entity and not link.state & link.LOCAL_CLOSED:
                self.drop_link(link)
                detach(link, "amqp:unauthorized-access", f"the token for {audience} expired")
            link = following

    def detach_receivers(self, entity, sid=None):
        q = self.queues.get(entity)
        if q is None:
            return
        if sid is None:
            links = list(q.consumers)
        else:
            links = [q.locks[sid]] if sid in q.locks else []
        for link in links:
            self.drop_link(link)
            detach(link, "amqp:link:detach-forced", "detached by request")

    # -- sessions -------------------------------------------------------------------------

    def free_session(self, q):
        for e in q.entries:
            if e.link is None and group_of(e) is not None and group_of(e) not in q.locks:
                return group_of(e)
        return None

    def hold(self, link):
        """Locks a session for a session receiver about to be answered; True when its attach
        is held (no session free yet) or refused."""
        if not link.is_sender:
            return False
        wanted, sid = session_filter(link)
        if not wanted:
            return False
        q = self.queue(link.remote_source.address or "")
        if sid is not None:
            if sid in q.locks:
                self.refuse(link, "com.microsoft:session-cannot-be-locked", f"session {sid} is locked")
                return True
            self.lock_session(q, link, sid)
            return False
        sid = self.free_session(q)
        if sid is not None:
            self.lock_session(q, link, sid)
            return False
        props = link.remote_properties or {}
        wait_ms = props.get(TIMEOUT, DEFAULT_SESSION_WAIT_MS)
        q.waiting.append(link)
        self.container.schedule(int(wait_ms) / 1000, HoldTimeout(self, link))
        return True

    def lock_session(self, q, link, sid):
        q.locks[sid] = link
        self.session_of[link] = (q, sid)

    def answer(self, link):
        """Answers a held session receiver's attach, its session locked."""
        link.source.address = link.remote_source.address
        link.target.address = link.remote_target.address
        self.open_session_link(link)
        link.open()

    def grant(self, q):
        while q.waiting:
            sid = self.free_session(q)
            if sid is None:
                return
            link = q.waiting.pop(0)
            self.lock_session(q, link, sid)
            self.answer(link)

    def give_up(self, link):
        for q in self.queues.values():
            if link in q.waiting:
                q.waiting.remove(link)
                self.refuse(link, "com.microsoft:timeout", "no session available")

    def refuse(self, link, condition, description):
        # As AMQP refuses a link: an attach with a null source, then a detach with the error.
        link.source.type = Terminus.UNSPECIFIED
        link.target.address = link.remote_target.address
        link.open()
        detach(link, condition, description)

    def open_session_link(self, link):
        q, sid = self.session_of[link]
        link.source.filter.put_object({SESSION_FILTER: Described(SESSION_FILTER_CODE, sid)})
        if link not in q.consumers:
            q.consumers.append(link)

    # -- links ----------------------------------------------------------------------------

    def on_link_opening(self, event):
        link = event.link
        if link.is_sender:
            address = link.remote_source.address or ""
            link.source.address = address
            link.target.address = link.remote_target.address
            if address.endswith(MGMT) or address == CBS:
                self.responders[link.remote_target.address] = link
            elif link in self.session_of:
                self.open_session_link(link)
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
        self.grant(q)
        for link in list(q.consumers):
            session = self.session_of.get(link)
            sid = session[1] if session else None
            while link.credit > 0:
                entry = next(
                    (e for e in q.entries if e.link is None and (session is None or group_of(e) == sid)),
                    None,
                )
                if entry is None:
                    break
                entry.message.delivery_count = entry.count
                entry.message.first_acquirer = entry.count == 0
                delivery = link.send(entry.message)
                entry.link = link
                self.in_flight[delivery] = (q, entry)

    def on_message(self, event):
        address = event.link.target.address or event.link.remote_target.address or ""
        if address == CBS:
            self.put_token(event.link.connection, event.message)
        elif address.startswith(DETACH):
            self.detach_receivers(address[len(DETACH):], session_to_detach(event.message))
        else:
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
            if link in q.waiting:
                q.waiting.remove(link)
        session = self.session_of.pop(link, None)
        if session is not None and session[0].locks.get(session[1]) == link:
            del session[0].locks[session[1]]
        for key, value in list(self.responders.items()):
            if value == link:
                del self.responders[key]
        touched = set()
        for delivery, (q, entry) in list(self.in_flight.items()):
            # proton hands out a new wrapper per access: compare links with ==, never `is`.
            if delivery.link == link:
                del self.in_flight[delivery]
                entry.link = None
                entry.count += 1
                touched.add(q.address)
        if session is not None:
            touched.add(session[0].address)
        for address in touched:
            self.dispatch(self.queues[address])

    def on_link_remote_close(self, event):
        # The client detached: put back what it had not settled, and detach our end too.
        self.drop_link(event.link)
        event.link.close()

    def on_link_closing(self, event):
        self.drop_link(event.link)

    def on_link_error(self, event):
        # The peer detached a link with an error (as a client answers a detach we forced):
        # that link ends, its connection stays (MessagingHandler would close the connection).
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
            q.waiting = [l for l in q.waiting if l.connection != connection]
            for sid, l in list(q.locks.items()):
                if l.connection == connection:
                    del q.locks[sid]
                    self.session_of.pop(l, None)
                    touched.add(q.address)
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
