//! The LiveOps [`Bus`](liveops_core::Bus) on AWS SQS FIFO queues (`BUS_KIND=sqs`).
//!
//! # Layout
//!
//! A topic fans out to one FIFO queue per consumer group, each with its own FIFO dead-letter
//! queue (names from [`names::Names`]; dots and dashes in topics and groups become `_`, long
//! parts are shortened with a hash, so a name stays within SQS's 80 characters):
//!
//! | queue | what |
//! |---|---|
//! | `<prefix>-<topic>-<group>.fifo` | the group's messages; redrive policy `maxReceiveCount` = `max_deliveries` |
//! | `<prefix>-<topic>-<group>-dlq.fifo` | the group's dead letters |
//! | `<prefix>-<topic>.fifo` | messages published while the topic had no group yet |
//!
//! `ensure_group` looks the group's two queues up and creates whichever is missing (on AWS,
//! Terraform may create them first; then it only finds them and needs no `sqs:CreateQueue`). Of
//! a found queue it changes one thing: a group queue whose redrive policy is not to its
//! dead-letter queue after `max_deliveries` (`BUS_MAX_DELIVERIES` changed since the queue was
//! made) gets that policy (`SetQueueAttributes`; a matching one is not written). If the role may
//! not (`sqs:SetQueueAttributes` refused), the queue keeps its own policy, start-up goes on, a
//! warning names the queue, both policies and the action, and the gauge
//! `bus_queue_settings_drift{bus="sqs",queue}` is 1 (0 once a start finds the queue as wanted).
//! Any other failure fails `ensure_group`. It then moves whatever waits in the topic's holding
//! queue to every group queue of the topic. A group queue is `MessageGroupId` = the player key,
//! so SQS hands one player's messages out in order and never hands a later one out while an
//! earlier one is in flight.
//! `MessageDeduplicationId` = `Message.id`: SQS drops a re-published message with the same id
//! within its 5-minute deduplication window. The queues the bus creates are high throughput
//! FIFO (`FifoThroughputLimit=perMessageGroupId`, `DeduplicationScope=messageGroup`): an event
//! id only ever comes with its player, so deduplication per player drops what a queue-wide one
//! would, and order is per group in both modes.
//!
//! # Publish
//!
//! A publisher finds a topic's groups with `ListQueues` on the topic's prefix, cached for
//! `group_refresh` (and listed again whenever the cache is empty), plus the groups it created
//! itself, so a gateway finds groups that consumers in other processes created. It sends every
//! message to every group queue with `SendMessageBatch`, 10 entries a call, calls to different
//! queues side by side ([`CONCURRENCY`] at once). Chunks that share a key go one after the
//! other, so a key's order survives; entries SQS refused are sent again (same deduplication id)
//! until the publish's deadline, then the publish answers `Unavailable`. `Ok` means every entry
//! of every batch of every group queue was stored by SQS.
//!
//! Publishes of a topic that arrive while one is being sent queue in the process and go out
//! together in the next send, in the order they came, up to [`SEND_CALLS`] calls a send (eight
//! rounds of [`CONCURRENCY`]); the rest waits for the send after. A publish's deadline is
//! `publish_deadline` from when it was queued (once per send's worth of calls it holds, for a
//! publish bigger than one send, which goes alone): its caller is answered `Unavailable` then at
//! the latest, whatever the sends before it take, and a publish whose deadline passed before
//! its turn (or whose caller left) is not sent at all (`bus_publishes_expired_total{bus="sqs"}`).
//! Before, everything queued went out as one send with one deadline: under load that send
//! missed it for every caller in it, and the next, bigger still, again.
//!
//! **Round trips:** a publish of `N` messages to a topic with `G` groups makes exactly
//! `ceil(N / 10) · G` `SendMessageBatch` calls when nothing is retried, plus one `ListQueues`
//! per `group_refresh` per topic. A poll makes one `ReceiveMessage` call, then more rounds only
//! while calls come back full (10 messages), each round twice the full calls of the last (at
//! most [`CONCURRENCY`]): a poll that brings `m` messages makes about `2 · ceil(m / 10) + 1`
//! calls at most, and one call when the first brings fewer than 10. In a FIFO queue the groups a
//! poll holds are locked, so a short call means the others are empty or held too. A poll that
//! finds nothing makes one call, a long poll of at least a second: an idle consumer makes about
//! one a second per group. An ack of
//! `n` deliveries makes `ceil(n / 10)` `DeleteMessageBatch` calls. Every call counts in
//! `bus_round_trips_total{bus="sqs",op}` and [`SqsBus::round_trips`].
//!
//! # Poll, ack, redelivery
//!
//! A poll with nothing in hand long-polls: `WaitTimeSeconds` is its wait rounded up to whole
//! seconds, at least 1 and at most 20, so a consumer polling every 200 ms while idle makes one
//! `ReceiveMessage` call a second per group, not ten (a poll that finds nothing may return up
//! to a second after its wait; a message ends it at once; a caller that drops the poll, as a
//! consumer does at shutdown, ends it at once). A poll with `wait` zero, or whose buffered
//! messages wait for a key another consumer of this process holds, short-polls instead. Then it
//! fills `max` with short `ReceiveMessage` calls of 10 side by side while they come back full.
//! A poll waiting for another poll of the group in this process to finish its receive takes
//! what that one brought instead of receiving itself. A receive that fails after the poll
//! handed messages out ends the poll with those messages (the error comes back on the next
//! poll), so nothing handed out is left without a consumer. Every failed `ReceiveMessage` call
//! counts in `bus_receive_failures_total{bus="sqs"}`; one whose failure is not the poll's
//! answer (another call of its round brought messages, or the poll already holds some) is
//! logged at warn.
//! Delivery ids are SQS message ids, stable across redeliveries; the bus keeps each one's
//! latest receipt handle for the ack (`DeleteMessageBatch`). `deliveries` is
//! `ApproximateReceiveCount`. What one receive returned beyond `max` waits in the bus for the
//! next poll of the group (at most a third of the visibility timeout, at most 5 s; after that
//! it is left to SQS, which hands it out again, counting one more delivery); a buffered
//! message whose key another consumer of this process holds waits too, so one player's
//! messages are never in flight to two consumers at once.
//!
//! While a consumer holds a delivery (not acked, and it has not polled the group again), a
//! background task extends its visibility (`ChangeMessageVisibilityBatch`, once less than two
//! thirds of the visibility timeout is left, checked every sixth) for up to `max_hold` from when
//! it was handed out, so a slow batch is not handed to another consumer meanwhile. Every queue
//! is extended even when another fails (throttled, deleted); failed calls are counted in
//! `bus_visibility_extension_failures_total{bus="sqs"}` and logged, and the deliveries of a
//! deleted queue are forgotten. One whose visibility runs out all the same (SQS slower than the
//! margin) is counted in `bus_visibility_lapsed_total` and logged: SQS delivers it again.
//! When the process dies the extension stops and SQS hands the messages out again after the
//! visibility timeout. A consumer polls again once it is done with a batch, so its next poll of
//! the group ends the hold of what it did not ack (an event that failed): that comes back when
//! its visibility runs out, within one visibility timeout, and reaches the dead letters after
//! `max_deliveries` of them. Only a consumer that stops polling without acking (hung) keeps its
//! deliveries hidden for `max_hold` (zero turns the extension off).
//!
//! After `max_deliveries` receives SQS moves a message to the group's dead-letter queue (the
//! redrive policy). `dead_letters` peeks at it (receive, then visibility 0 again; the
//! `deliveries` reported is the group queue's `maxReceiveCount`, read then, which is how many a
//! dead letter had: `max_deliveries` unless the queue kept another count);
//! `replay_dead_letters` sends each one back to the group queue with a fresh deduplication id
//! (so its delivery count starts again at 1) and then deletes it from the dead-letter queue;
//! if the group queue is gone, the replay answers `Unavailable` and leaves the dead letters
//! where they are (likewise the move out of a holding queue when a group queue is gone).
//! `lag` is `ApproximateNumberOfMessages` + `…NotVisible` + `…Delayed` of the group queue.
//!
//! # Failures
//!
//! Every SQS call is bounded by `call_timeout` (a long poll by its wait plus that) and fails
//! with `PortError::Unavailable`; the SDK retries a call at most twice, 50–500 ms apart. A group
//! queue SQS no longer has (deleted, or an emulator restarted) is created again by the next poll
//! of its group (SQS refuses the name for 60 s after a delete); until then publishes, which list
//! the topic's queues again, skip it, so what is published meanwhile does not reach that group:
//! reset a group by purging its queue, never by deleting it. A lost holding queue is created
//! again by the next publish.
//!
//! # Known limits
//!
//! * Messages published to a topic with no group yet wait in its holding queue until an
//!   `ensure_group` moves them; a publish racing with that move may overtake them for the same
//!   player. Create the group queues before the gateways start (Terraform, or start the
//!   consumers first) and the holding queue is never used.
//! * AWS lists a new queue in `ListQueues` up to a minute late and its approximate counts
//!   (`lag`) trail by up to a minute; the emulator used in the tests (moto) does neither.

mod bus;
mod config;
pub mod names;

pub use bus::{Op, SqsBus, BATCH, CONCURRENCY, SEND_CALLS};
pub use config::{BusError, SqsConfig, StaticCredentials, MAX_PREFIX};
