//! [`SqsBus`]: the [`Bus`] on SQS FIFO queues. The layout and the costs are in the crate docs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region, StalledStreamProtectionConfig};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use liveops_core::ports::{
    drain_in_chunks, every_while_alive, hand_out, held_by_others, DeadLetterRequest, Delivery,
    Message, PollRequest,
};
use liveops_core::{Bus, Health, PortError, PortResult};
use tokio::time::Instant;

use crate::config::{config_error, BusError, SqsConfig};
use crate::names::{self, Names};

/// Most entries of one `SendMessageBatch`, `DeleteMessageBatch` or
/// `ChangeMessageVisibilityBatch`, and most messages of one `ReceiveMessage` (SQS limits).
pub const BATCH: usize = 10;

/// Most SQS calls of one publish, ack or poll under way at once.
pub const CONCURRENCY: usize = 8;

/// Longest long poll SQS allows.
const MAX_WAIT: Duration = Duration::from_secs(20);

/// Nap between short polls (while buffered messages wait for a key another consumer holds).
const NAP: Duration = Duration::from_millis(100);

/// The `WaitTimeSeconds` of a poll's long poll with `left` of its wait to go: whole seconds
/// (SQS counts no less), rounded up, at least 1 and at most 20. Rounding down to a short poll
/// made every consumer (waiting 200 ms a poll) send about ten receives a second per group while
/// idle; rounded up, an idle consumer sends one a second, and a poll may return up to a second
/// after its wait when nothing comes (a message that comes ends it at once).
pub(crate) fn long_poll_wait(left: Duration) -> Duration {
    let whole = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Duration::from_secs(whole.clamp(1, MAX_WAIT.as_secs()))
}

/// Longest a received message waits in the bus for a poll before it is left to SQS again.
const BUFFER_TTL_MAX: Duration = Duration::from_secs(5);

/// What every queue the bus creates is: FIFO, retention SQS's maximum (14 days), and high
/// throughput FIFO (throughput limited per message group, deduplication per message group).
/// The message group is the player and the deduplication id the event id, which only that
/// player's messages carry, so deduplication per group drops the same copies a queue-wide one
/// would; order and the group lock are the same in both modes.
const QUEUE_ATTRIBUTES: [(QueueAttributeName, &str); 4] = [
    (QueueAttributeName::FifoQueue, "true"),
    (QueueAttributeName::MessageRetentionPeriod, "1209600"),
    (QueueAttributeName::DeduplicationScope, "messageGroup"),
    (QueueAttributeName::FifoThroughputLimit, "perMessageGroupId"),
];

/// Message attributes the bus sets: the key, the message id, and the publisher's order stamp.
const ATTR_KEY: &str = "k";
const ATTR_ID: &str = "i";
const ATTR_ORDER: &str = "s";

/// SQS error codes the bus reacts to.
const NO_QUEUE: [&str; 2] = [
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];
const QUEUE_EXISTS: [&str; 2] = ["QueueNameExists", "QueueAlreadyExists"];
/// Codes of a request IAM refused: AWS's (through `x-amzn-query-error`), the JSON protocol's own,
/// and the older spelling.
const REFUSED: [&str; 3] = ["AccessDenied", "AccessDeniedException", "NotAuthorized"];
/// Codes of a 403 about the credentials themselves, not about what they may do.
const BAD_CREDENTIALS: [&str; 4] = [
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidSecurity",
];

/// Whether an SQS error with `code` and HTTP `status` is a refusal for permissions: a refusal
/// code, or a 403 with no credentials code (moto answers a refusal with a body the SDK cannot
/// read, so only the status tells).
pub(crate) fn refused(code: Option<&str>, status: Option<u16>) -> bool {
    match code {
        Some(c) if REFUSED.contains(&c) => true,
        Some(c) if BAD_CREDENTIALS.contains(&c) => false,
        _ => status == Some(403),
    }
}

/// One SQS call kind, for [`SqsBus::round_trips`] and `bus_round_trips_total{bus="sqs",op}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `SendMessageBatch`.
    Send,
    /// `ReceiveMessage`.
    Receive,
    /// `DeleteMessageBatch`.
    Delete,
    /// `ChangeMessageVisibilityBatch`.
    Visibility,
    /// `GetQueueAttributes`.
    Attributes,
    /// `ListQueues`.
    List,
    /// `GetQueueUrl`, `CreateQueue`, `SetQueueAttributes`, `DeleteQueue`.
    Admin,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::Send,
        Op::Receive,
        Op::Delete,
        Op::Visibility,
        Op::Attributes,
        Op::List,
        Op::Admin,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Op::Send => "send",
            Op::Receive => "receive",
            Op::Delete => "delete",
            Op::Visibility => "visibility",
            Op::Attributes => "attributes",
            Op::List => "list",
            Op::Admin => "admin",
        }
    }
}

/// A topic's group queues as last listed.
#[derive(Debug)]
struct TopicGroups {
    urls: BTreeSet<String>,
    listed_at: Instant,
}

/// A group's queue and its dead-letter queue.
#[derive(Clone, Debug)]
struct GroupQueues {
    url: String,
    dlq: String,
}

/// A message as received from SQS.
#[derive(Clone, Debug)]
struct Received {
    message_id: String,
    receipt: String,
    key: String,
    id: String,
    payload: Bytes,
    deliveries: u32,
    order: String,
    received_at: Instant,
}

/// What one round of side-by-side receives brought.
#[derive(Debug)]
struct Round {
    /// Every message, each key's in order (see [`merge`]).
    got: Vec<Received>,
    /// How many calls came back full: only those say there may be more to receive now.
    full: usize,
    /// How many messages SQS handed out, those that are not the bus's included.
    received: usize,
}

/// What [`Inner::set_visibility`] did.
#[derive(Debug, Default)]
struct Changed {
    /// The receipts SQS accepted.
    done: BTreeSet<String>,
    /// The calls that failed.
    failed: Vec<CallError>,
}

/// Calls of the next fill round of a poll, after a round in which `full` calls came back with
/// 10 messages and `wanted` messages are still missing.
///
/// In a FIFO queue a receive skips every message group with a message in flight, and the
/// groups this poll already holds are in flight. A call that came back with fewer than 10
/// found every other group empty or held, so a next call would find nothing either: a round
/// with no full call ends the poll. Each full call may mean more groups waiting; the next round
/// doubles them, up to [`CONCURRENCY`] and to what is still wanted. Before this, every poll
/// that got anything sent [`CONCURRENCY`] more receives, almost all of them empty: ten calls
/// per batch, most of the emulator's time, and the reason consumers fell behind.
pub(crate) fn next_round(full: usize, wanted: usize) -> usize {
    if full == 0 {
        return 0;
    }
    (full * 2).min(wanted.div_ceil(BATCH)).min(CONCURRENCY)
}

/// A delivery handed to a consumer and not acked yet.
#[derive(Clone, Debug)]
struct Out {
    url: String,
    receipt: String,
    key: String,
    consumer: String,
    /// Until when the bus extends its visibility: `max_hold` after it was handed out, cut to
    /// the moment its consumer polls the group again (it gave the delivery up).
    hold_until: Instant,
    visible_until: Instant,
}

/// What this process holds of one group.
#[derive(Debug, Default)]
struct Held {
    /// Received, not handed out yet, in order.
    buffer: VecDeque<Received>,
    /// Handed out, not acked: SQS message id → delivery.
    out: HashMap<String, Out>,
    /// Receive rounds done for the group: a poll that waited for its turn sees whether another
    /// poll received for the group meanwhile.
    rounds: u64,
}

/// Taken by the poll that is receiving a group's messages.
type Turn = Arc<tokio::sync::Mutex<()>>;

/// Where a queued publish learns how it went.
type Reply = tokio::sync::oneshot::Sender<PortResult<()>>;

/// Most `SendMessageBatch` calls of one send of queued publishes: eight rounds of
/// [`CONCURRENCY`] calls side by side, a fraction of a gateway's 2 s publish deadline even at
/// 100 ms a call. What is queued beyond it waits for the next send.
pub const SEND_CALLS: usize = 8 * CONCURRENCY;

/// `SendMessageBatch` calls of a publish of `messages` to `groups` queues (nothing retried).
pub(crate) fn send_calls(messages: usize, groups: usize) -> usize {
    messages.div_ceil(BATCH) * groups.max(1)
}

/// Sends' worth of calls in a publish of `messages` to `groups` queues: its deadline is the
/// publish deadline this many times (1 for every publish that fits one send).
pub(crate) fn sends_of(messages: usize, groups: usize) -> u32 {
    let sends = send_calls(messages, groups).div_ceil(SEND_CALLS).max(1);
    u32::try_from(sends).unwrap_or(u32::MAX)
}

/// A publish waiting to be sent.
#[derive(Debug)]
struct Queued {
    messages: Vec<Message>,
    reply: Reply,
    /// When its caller is answered `Unavailable` if its messages are not stored by then: the
    /// publish deadline from when it was queued (see [`sends_of`]).
    deadline: Instant,
}

/// Publishes of one topic waiting for the one being sent.
#[derive(Debug, Default)]
struct Outbox {
    queued: VecDeque<Queued>,
    sending: bool,
}

/// Takes the next send off the front of `queued`, for a topic with `groups` group queues:
/// publishes in the order they came while their messages together take at most [`SEND_CALLS`]
/// calls (the first always, however big). Publishes whose deadline passed before they were
/// taken, or whose caller left, are not sent: they are returned apart (their callers were told
/// `Unavailable` or are gone), so a backlog is never sent late to callers that gave up on it.
fn next_send(
    queued: &mut VecDeque<Queued>,
    groups: usize,
    now: Instant,
) -> (Vec<Queued>, Vec<Queued>) {
    let (mut taken, mut stale) = (Vec::new(), Vec::new());
    let mut messages = 0;
    while let Some(q) = queued.pop_front() {
        if q.deadline <= now || q.reply.is_closed() {
            stale.push(q);
            continue;
        }
        let more = messages + q.messages.len();
        if !taken.is_empty() && send_calls(more, groups) > SEND_CALLS {
            queued.push_front(q);
            break;
        }
        messages = more;
        taken.push(q);
    }
    (taken, stale)
}

/// Sends what is queued for `topic`, send after send, until nothing is left: publishes that
/// arrive while one is under way go out together in the next one (fewer, fuller batches), up
/// to [`SEND_CALLS`] calls a send (see [`next_send`]). A send retries until the latest deadline
/// of its publishes; each caller is answered at its own deadline at the latest (`publish`).
async fn send_queued(inner: Arc<Inner>, topic: String) {
    loop {
        let groups = inner.known_groups(&topic);
        let (batch, stale) = {
            let mut boxes = lock(&inner.outboxes);
            let Some(b) = boxes.get_mut(&topic) else {
                return;
            };
            let (batch, stale) = next_send(&mut b.queued, groups, Instant::now());
            if batch.is_empty() && b.queued.is_empty() {
                b.sending = false;
            }
            (batch, stale)
        };
        if !stale.is_empty() {
            metrics::counter!("bus_publishes_expired_total", "bus" => "sqs")
                .increment(stale.len() as u64);
        }
        for q in stale {
            let _ = q.reply.send(Err(PortError::Unavailable(
                "sqs publish: its deadline passed while it waited to be sent".into(),
            )));
        }
        let Some(deadline) = batch.iter().map(|q| q.deadline).max() else {
            return;
        };
        let all: Vec<Message> = batch
            .iter()
            .flat_map(|q| q.messages.iter().cloned())
            .collect();
        let result = inner.publish_now(&topic, all, deadline).await;
        for q in batch {
            let _ = q.reply.send(result.clone());
        }
    }
}

/// Why one SQS call failed.
#[derive(Debug)]
enum CallError {
    /// The queue does not exist (deleted, or the emulator restarted).
    NoQueue(String),
    /// The queue exists with other attributes.
    Exists(String),
    /// IAM refused the call (see [`refused`]).
    Refused(String),
    /// Anything else: unreachable, timed out, throttled.
    Other(String),
}

impl CallError {
    fn port(self) -> PortError {
        match self {
            CallError::NoQueue(m)
            | CallError::Exists(m)
            | CallError::Refused(m)
            | CallError::Other(m) => PortError::Unavailable(m),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding these locks; recover the data if one ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts `n` failed `ReceiveMessage` calls (`bus_receive_failures_total{bus="sqs"}`).
fn receive_failed(n: usize) {
    metrics::counter!("bus_receive_failures_total", "bus" => "sqs").increment(n as u64);
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// One batch entry per receipt of `receipts`, its index for id, as `entry` builds it; `what`
/// names the batch in an error.
fn batch_entries<T, E: std::fmt::Display>(
    receipts: &[String],
    what: &str,
    entry: impl Fn(String, &str) -> Result<T, E>,
) -> PortResult<Vec<T>> {
    receipts
        .iter()
        .enumerate()
        .map(|(i, r)| {
            entry(i.to_string(), r)
                .map_err(|e| PortError::Unavailable(format!("sqs {what} entry: {e}")))
        })
        .collect()
}

fn string_attr(value: &str) -> PortResult<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| PortError::Unavailable(format!("sqs message attribute: {e}")))
}

/// The SQS bus. See the crate docs for the layout, the guarantees and the costs.
pub struct SqsBus {
    /// The only strong owner: the extension task holds a `Weak` and ends once the bus is gone.
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: SqsConfig,
    names: Names,
    /// Topic → its group queues.
    topics: Mutex<HashMap<String, TopicGroups>>,
    /// (topic, group) → its queues.
    groups: Mutex<HashMap<(String, String), GroupQueues>>,
    /// Topic → its holding queue.
    holding: Mutex<HashMap<String, String>>,
    /// (topic, group) → what this process received and handed out.
    held: Mutex<HashMap<(String, String), Held>>,
    /// (topic, group) → taken while a poll receives, so two polls of this process never
    /// interleave their receives of one group.
    receiving: Mutex<HashMap<(String, String), Turn>>,
    /// Topic → publishes waiting while one is being sent (they go out together next).
    outboxes: Mutex<HashMap<String, Outbox>>,
    /// The publisher's order stamp counter.
    seq: AtomicU64,
    trips: [AtomicU64; 7],
}

impl fmt::Debug for SqsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsBus")
            .field("region", &self.inner.config.region)
            .field("endpoint", &self.inner.config.endpoint)
            .field("queue_prefix", &self.inner.config.queue_prefix)
            .finish_non_exhaustive()
    }
}

impl SqsBus {
    /// Builds the client (static credentials when given, else the standard chain; the explicit
    /// endpoint when given) and checks that SQS answers (`ListQueues`) within the call timeout.
    pub async fn connect(config: SqsConfig) -> Result<Self, BusError> {
        config.validate()?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.call_timeout)
            .build();
        let retry = RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_millis(500));
        let mut builder = match &config.credentials {
            Some(c) => {
                // Static credentials: no provider chain, so no instance-metadata lookups.
                let region = config.region.clone().ok_or_else(|| {
                    config_error("AWS_REGION is required with static credentials")
                })?;
                aws_sdk_sqs::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(region))
                    .credentials_provider(Credentials::new(
                        c.access_key_id.clone(),
                        c.secret_access_key.clone(),
                        c.session_token.clone(),
                        None,
                        "liveops-static",
                    ))
            }
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http.clone())
                    .timeout_config(timeouts.clone());
                if let Some(region) = &config.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                let shared = loader.load().await;
                if shared.region().is_none() {
                    return Err(config_error("no AWS region: set AWS_REGION"));
                }
                aws_sdk_sqs::config::Builder::from(&shared)
            }
        };
        builder = builder
            .http_client(http)
            .timeout_config(timeouts)
            .retry_config(retry)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        let client = Client::from_conf(builder.build());
        let inner = Arc::new(Inner {
            client,
            names: Names::new(&config.queue_prefix),
            config,
            topics: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            holding: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            receiving: Mutex::new(HashMap::new()),
            outboxes: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            trips: Default::default(),
        });
        inner.healthcheck().await?;
        if !inner.config.max_hold.is_zero() {
            let weak = Arc::downgrade(&inner);
            // Every sixth of the timeout, for those with less than two thirds left: an extension
            // goes out with a half to two thirds of the timeout to spare.
            let tick = (inner.config.visibility_timeout / 6).max(Duration::from_millis(200));
            tokio::spawn(every_while_alive(
                weak,
                tick,
                |inner| async move { inner.extend().await },
                |error| tracing::warn!(%error, "sqs visibility extension failed; retrying"),
            ));
        }
        Ok(Self { inner })
    }

    /// SQS calls made so far, per kind (the same counts as `bus_round_trips_total`).
    pub fn round_trips(&self) -> BTreeMap<Op, u64> {
        Op::ALL
            .iter()
            .zip(&self.inner.trips)
            .map(|(op, n)| (*op, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// The queue names this bus uses.
    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    /// Deletes the group's queue and dead-letter queue (for tests and decommissioning).
    pub async fn delete_group(&self, topic: &str, group: &str) -> PortResult<()> {
        let inner = &self.inner;
        for name in [
            inner.names.group_queue(topic, group),
            inner.names.dead_letter_queue(topic, group),
        ] {
            let Some(url) = inner.queue_url(&name).await? else {
                continue;
            };
            inner
                .call(
                    Op::Admin,
                    "delete queue",
                    inner.client.delete_queue().queue_url(&url).send(),
                )
                .await
                .map_err(CallError::port)?;
        }
        inner.forget_topic(topic);
        lock(&inner.groups).remove(&(topic.to_owned(), group.to_owned()));
        Ok(())
    }
}

impl Inner {
    /// Counts a held delivery whose visibility ran out before an extension or its ack reached
    /// SQS (a slow or unreachable endpoint): it will be delivered again.
    fn lapse(&self, message_id: &str) {
        metrics::counter!("bus_visibility_lapsed_total", "bus" => "sqs").increment(1);
        tracing::warn!(
            message_id,
            "sqs visibility ran out while the delivery was held; SQS will deliver it again"
        );
    }

    fn count(&self, op: Op) {
        let i = Op::ALL.iter().position(|o| *o == op).unwrap_or(0);
        self.trips[i].fetch_add(1, Ordering::Relaxed);
        metrics::counter!("bus_round_trips_total", "bus" => "sqs", "op" => op.label()).increment(1);
    }

    /// Runs one SQS call, bounded by the call timeout plus `extra` (a long poll's wait).
    async fn call_for<T, E>(
        &self,
        op: Op,
        what: &str,
        extra: Duration,
        call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, CallError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.count(op);
        let limit = self.config.call_timeout + extra;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let message = format!(
                    "sqs {what}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                );
                let status = e.raw_response().map(|r| r.status().as_u16());
                Err(match e.code() {
                    Some(code) if NO_QUEUE.contains(&code) => CallError::NoQueue(message),
                    Some(code) if QUEUE_EXISTS.contains(&code) => CallError::Exists(message),
                    code if refused(code, status) => CallError::Refused(message),
                    _ => CallError::Other(message),
                })
            }
            Err(_) => Err(CallError::Other(format!(
                "sqs {what}: no answer within {limit:?}"
            ))),
        }
    }

    async fn call<T, E>(
        &self,
        op: Op,
        what: &str,
        call: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, CallError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call_for(op, what, Duration::ZERO, call).await
    }

    async fn healthcheck(&self) -> PortResult<()> {
        self.call(
            Op::List,
            "list queues",
            self.client
                .list_queues()
                .queue_name_prefix(&self.config.queue_prefix)
                .max_results(1)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(CallError::port)
    }

    /// The URL of a queue by name, `None` if it does not exist.
    async fn queue_url(&self, name: &str) -> PortResult<Option<String>> {
        match self
            .call(
                Op::Admin,
                "get queue url",
                self.client.get_queue_url().queue_name(name).send(),
            )
            .await
        {
            Ok(out) => Ok(out.queue_url().map(str::to_owned)),
            Err(CallError::NoQueue(_)) => Ok(None),
            Err(e) => Err(e.port()),
        }
    }

    /// The URL of the FIFO queue `name`, created with `attributes` if it does not exist (on
    /// top of [`QUEUE_ATTRIBUTES`]). A queue that exists is left as it is here, whatever its
    /// attributes: Terraform may own them, and the bus may lack `sqs:CreateQueue` (only a group
    /// queue's redrive policy is brought in line, by [`Inner::align_redrive`]).
    async fn find_or_create(
        &self,
        name: &str,
        attributes: &[(QueueAttributeName, String)],
    ) -> PortResult<String> {
        if let Some(url) = self.queue_url(name).await? {
            return Ok(url);
        }
        let mut create = self.client.create_queue().queue_name(name);
        for (k, v) in QUEUE_ATTRIBUTES {
            create = create.attributes(k, v);
        }
        for (k, v) in attributes {
            create = create.attributes(k.clone(), v.clone());
        }
        match self.call(Op::Admin, "create queue", create.send()).await {
            Ok(out) => out
                .queue_url()
                .map(str::to_owned)
                .ok_or_else(|| PortError::Unavailable(format!("sqs created {name} without url"))),
            // Created meanwhile with other attributes (another process, Terraform): use it.
            Err(CallError::Exists(_)) => self.queue_url(name).await?.ok_or_else(|| {
                PortError::Unavailable(format!("sqs queue {name} exists and does not"))
            }),
            Err(e) => Err(e.port()),
        }
    }

    async fn queue_arn(&self, url: &str) -> PortResult<String> {
        let out = self
            .call(
                Op::Attributes,
                "get queue arn",
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send(),
            )
            .await
            .map_err(CallError::port)?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| PortError::Unavailable(format!("sqs queue {url} has no arn")))
    }

    /// Finds the group's dead-letter queue and queue, creating whichever is missing (the queue
    /// with a redrive policy to the dead-letter queue after `max_deliveries`). A group queue
    /// found gets that redrive policy if it has another ([`Inner::align_redrive`]); nothing
    /// else about a queue found is changed.
    async fn create_group(&self, topic: &str, group: &str) -> PortResult<GroupQueues> {
        let dlq_name = self.names.dead_letter_queue(topic, group);
        let dlq = self.find_or_create(&dlq_name, &[]).await?;
        let name = self.names.group_queue(topic, group);
        let url = match self.queue_url(&name).await? {
            Some(url) => {
                self.align_redrive(&name, &url, &dlq_name, &dlq).await?;
                url
            }
            None => {
                let arn = self.queue_arn(&dlq).await?;
                let attributes = [
                    (
                        QueueAttributeName::VisibilityTimeout,
                        secs(self.config.visibility_timeout).to_string(),
                    ),
                    (
                        QueueAttributeName::RedrivePolicy,
                        redrive_policy(&arn, self.config.max_deliveries),
                    ),
                ];
                self.find_or_create(&name, &attributes).await?
            }
        };
        let queues = GroupQueues { url, dlq };
        lock(&self.groups).insert((topic.to_owned(), group.to_owned()), queues.clone());
        if let Some(t) = lock(&self.topics).get_mut(topic) {
            t.urls.insert(queues.url.clone());
        }
        Ok(queues)
    }

    /// The redrive policy (`""` if none) and the ARN of the queue at `url`.
    async fn redrive_and_arn(&self, url: &str) -> Result<(String, Option<String>), CallError> {
        let out = self
            .call(
                Op::Attributes,
                "get queue redrive policy",
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::RedrivePolicy)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send(),
            )
            .await?;
        let attr = |name| out.attributes().and_then(|a| a.get(&name)).cloned();
        Ok((
            attr(QueueAttributeName::RedrivePolicy).unwrap_or_default(),
            attr(QueueAttributeName::QueueArn),
        ))
    }

    /// Gives the found group queue `name` the redrive policy to its dead-letter queue
    /// `dlq_name` after `max_deliveries` receives, with `SetQueueAttributes`, only when its
    /// own names another target or count (a changed `BUS_MAX_DELIVERIES`). A refusal for
    /// permissions (a role without `sqs:SetQueueAttributes`) leaves the queue as it is and
    /// start-up goes on: it is logged and `bus_queue_settings_drift{bus="sqs",queue}` is 1
    /// (0 once a start finds the queue as wanted). Any other failure is an error.
    async fn align_redrive(
        &self,
        name: &str,
        url: &str,
        dlq_name: &str,
        dlq_url: &str,
    ) -> PortResult<()> {
        let drift = |d: f64| {
            metrics::gauge!("bus_queue_settings_drift", "bus" => "sqs", "queue" => name.to_owned())
                .set(d);
        };
        let (current, arn) = match self.redrive_and_arn(url).await {
            Ok(found) => found,
            Err(CallError::Refused(error)) => {
                tracing::warn!(
                    queue = name,
                    %error,
                    action = "sqs:GetQueueAttributes",
                    "sqs redrive policy not read (refused): not checked against BUS_MAX_DELIVERIES"
                );
                return Ok(());
            }
            Err(e) => return Err(e.port()),
        };
        // The dead-letter queue was found by name in the group queue's account and region.
        let dlq_arn = match arn.as_deref().and_then(|a| a.rsplit_once(':')) {
            Some((head, _)) => format!("{head}:{dlq_name}"),
            None => self.queue_arn(dlq_url).await?,
        };
        let max = self.config.max_deliveries;
        let Some(wanted) = redrive_change(&current, &dlq_arn, max) else {
            drift(0.0);
            return Ok(());
        };
        let set = self.client.set_queue_attributes().queue_url(url);
        let set = set.attributes(QueueAttributeName::RedrivePolicy, &wanted);
        match self
            .call(Op::Admin, "set queue redrive policy", set.send())
            .await
        {
            Ok(_) => {
                tracing::info!(queue = name, current, wanted, "sqs redrive policy updated");
                drift(0.0);
                Ok(())
            }
            Err(CallError::Refused(error)) => {
                tracing::warn!(
                    queue = name,
                    current,
                    wanted,
                    action = "sqs:SetQueueAttributes",
                    %error,
                    "sqs redrive policy is not BUS_MAX_DELIVERIES and the role may not change it: \
                     the queue keeps its own (grant the action, or change the queue where it is \
                     made, e.g. Terraform)"
                );
                drift(1.0);
                Ok(())
            }
            Err(e) => Err(e.port()),
        }
    }

    /// The `maxReceiveCount` SQS enforces on the group queue at `url`: its redrive policy's,
    /// else (none, or not read) `max_deliveries`.
    async fn max_receives(&self, url: &str) -> u32 {
        match self.redrive_and_arn(url).await {
            Ok((policy, _)) => redrive_of(&policy).1,
            Err(error) => {
                tracing::debug!(?error, "sqs redrive policy not read");
                None
            }
        }
        .unwrap_or(self.config.max_deliveries)
    }

    /// The group's queues: cached, looked up, or (when `create`) created.
    async fn group(
        &self,
        topic: &str,
        group: &str,
        create: bool,
    ) -> PortResult<Option<GroupQueues>> {
        let key = (topic.to_owned(), group.to_owned());
        if let Some(q) = lock(&self.groups).get(&key) {
            return Ok(Some(q.clone()));
        }
        let url = self
            .queue_url(&self.names.group_queue(topic, group))
            .await?;
        let dlq = self
            .queue_url(&self.names.dead_letter_queue(topic, group))
            .await?;
        match (url, dlq) {
            (Some(url), Some(dlq)) => {
                let q = GroupQueues { url, dlq };
                lock(&self.groups).insert(key, q.clone());
                Ok(Some(q))
            }
            _ if create => self.create_group(topic, group).await.map(Some),
            _ => Ok(None),
        }
    }

    /// The messages in the queue at `url` by SQS's approximate counts: waiting, in flight and
    /// delayed.
    async fn message_count(&self, url: &str) -> Result<u64, CallError> {
        let names = vec![
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let out = self
            .call(
                Op::Attributes,
                "get queue attributes",
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .set_attribute_names(Some(names.clone()))
                    .send(),
            )
            .await?;
        let attrs = out.attributes();
        Ok(names
            .iter()
            .filter_map(|a| attrs.and_then(|m| m.get(a)))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum())
    }

    /// Sets `bus_dead_letter_messages{bus="sqs",topic,group}` to the messages in the group's
    /// dead-letter queue at `dlq` (in flight too: a `liveops dead-letters` listing holds them
    /// a moment). SQS moves them there by the redrive policy, unseen by the consumers, so this
    /// is what tells of them. A count that cannot be read leaves the gauge as it was (logged at
    /// debug; the lag read beside it reports an unreachable SQS).
    async fn count_dead_letters(&self, topic: &str, group: &str, dlq: &str) {
        match self.message_count(dlq).await {
            Ok(n) => metrics::gauge!("bus_dead_letter_messages", "bus" => "sqs",
                "topic" => topic.to_owned(), "group" => group.to_owned())
            .set(n as f64),
            Err(e) => {
                tracing::debug!(topic, group, error = %e.port(), "cannot count sqs dead letters");
            }
        }
    }

    fn forget_group(&self, topic: &str, group: &str) {
        lock(&self.groups).remove(&(topic.to_owned(), group.to_owned()));
    }

    fn forget_topic(&self, topic: &str) {
        lock(&self.topics).remove(topic);
        lock(&self.holding).remove(topic);
    }

    /// How many group queues the topic had when last listed (at least 1: before the first
    /// listing, and for the holding queue), which sizes its sends and deadlines.
    fn known_groups(&self, topic: &str) -> usize {
        lock(&self.topics)
            .get(topic)
            .map_or(1, |t| t.urls.len())
            .max(1)
    }

    /// The topic's group queues: cached for `group_refresh`, listed again when empty.
    async fn targets(&self, topic: &str) -> PortResult<BTreeSet<String>> {
        if let Some(t) = lock(&self.topics).get(topic) {
            if !t.urls.is_empty() && t.listed_at.elapsed() < self.config.group_refresh {
                return Ok(t.urls.clone());
            }
        }
        let prefix = self.names.topic_prefix(topic);
        let mut urls = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call(
                    Op::List,
                    "list queues",
                    self.client
                        .list_queues()
                        .queue_name_prefix(&prefix)
                        .max_results(1000)
                        .set_next_token(token.clone())
                        .send(),
                )
                .await
                .map_err(CallError::port)?;
            urls.extend(
                out.queue_urls()
                    .iter()
                    .filter(|u| self.names.is_group_queue(topic, u))
                    .cloned(),
            );
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        // Groups this process created may not be listed yet (AWS lists new queues late).
        for ((t, _), q) in lock(&self.groups).iter() {
            if t == topic {
                urls.insert(q.url.clone());
            }
        }
        lock(&self.topics).insert(
            topic.to_owned(),
            TopicGroups {
                urls: urls.clone(),
                listed_at: Instant::now(),
            },
        );
        Ok(urls)
    }

    async fn holding_queue(&self, topic: &str, create: bool) -> PortResult<Option<String>> {
        if let Some(url) = lock(&self.holding).get(topic) {
            return Ok(Some(url.clone()));
        }
        let name = self.names.holding_queue(topic);
        let url = if create {
            Some(self.find_or_create(&name, &[]).await?)
        } else {
            self.queue_url(&name).await?
        };
        if let Some(url) = &url {
            lock(&self.holding).insert(topic.to_owned(), url.clone());
        }
        Ok(url)
    }

    /// Builds the batch entry of `m` at index `i`.
    fn entry(
        &self,
        i: usize,
        m: &Message,
        dedup: String,
        order: &str,
    ) -> PortResult<SendMessageBatchRequestEntry> {
        SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(base64::engine::general_purpose::STANDARD.encode(&m.payload))
            .message_group_id(names::group_id(&m.key))
            .message_deduplication_id(dedup)
            .message_attributes(ATTR_KEY, string_attr(&m.key)?)
            .message_attributes(ATTR_ID, string_attr(&m.id)?)
            .message_attributes(ATTR_ORDER, string_attr(order)?)
            .build()
            .map_err(|e| PortError::Unavailable(format!("sqs batch entry: {e}")))
    }

    fn order_stamp(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{:013}.{n:012}", unix_ms())
    }

    /// Sends one chunk (≤ 10 entries) to `url`, retrying failed entries until `deadline`.
    /// `Ok(false)` when the queue no longer exists.
    async fn send_chunk(
        &self,
        url: &str,
        mut entries: Vec<SendMessageBatchRequestEntry>,
        deadline: Instant,
    ) -> PortResult<bool> {
        let mut pause = Duration::from_millis(50);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // No attempt outlives the deadline (the SDK's own retries included): a publish
            // answers `Unavailable` at `publish_deadline`, not a call timeout later.
            let call = self.call(
                Op::Send,
                "send message batch",
                self.client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries.clone()))
                    .send(),
            );
            let result = tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
                Err(CallError::Other(format!(
                    "sqs send message batch: no answer within the publish deadline {:?}",
                    self.config.publish_deadline
                )))
            });
            let error = match result {
                Ok(out) => {
                    if out.failed().is_empty() {
                        return Ok(true);
                    }
                    let failed: BTreeSet<&str> = out.failed().iter().map(|f| f.id()).collect();
                    let error = out
                        .failed()
                        .iter()
                        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join("; ");
                    entries.retain(|e| failed.contains(e.id()));
                    format!(
                        "sqs send message batch: {} entries failed: {error}",
                        failed.len()
                    )
                }
                Err(CallError::NoQueue(_)) => return Ok(false),
                Err(e) => e.port().to_string(),
            };
            if left <= pause {
                return Err(PortError::Unavailable(error));
            }
            tracing::debug!(%error, "sqs send failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Sends `messages` to every queue in `urls` (one lane of chunks at a time per key run),
    /// retrying refused entries until `deadline`. Returns the queues that turned out not to
    /// exist.
    async fn send_all(
        &self,
        urls: &BTreeSet<String>,
        messages: &[Message],
        dedup: impl Fn(&Message) -> String,
        deadline: Instant,
    ) -> PortResult<Vec<String>> {
        let lanes = plan(messages);
        let mut jobs = Vec::new();
        for url in urls {
            for lane in &lanes {
                let mut chunks = Vec::new();
                for chunk in lane {
                    let entries = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, &m)| {
                            let m = &messages[m];
                            self.entry(i, m, dedup(m), &self.order_stamp())
                        })
                        .collect::<PortResult<Vec<_>>>()?;
                    chunks.push(entries);
                }
                jobs.push((url.clone(), chunks));
            }
        }
        let results: Vec<PortResult<Option<String>>> = stream::iter(jobs)
            .map(|(url, chunks)| async move {
                for entries in chunks {
                    if !self.send_chunk(&url, entries, deadline).await? {
                        return Ok(Some(url));
                    }
                }
                Ok(None)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut gone = Vec::new();
        for r in results {
            if let Some(url) = r? {
                gone.push(url);
            }
        }
        gone.sort();
        gone.dedup();
        Ok(gone)
    }

    /// One round of up to `calls` concurrent `ReceiveMessage` calls of 10 on `url`, merged
    /// into one list that keeps each key's order (see [`merge`]).
    async fn receive(
        &self,
        url: &str,
        calls: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, CallError> {
        // A receive of only messages that are not the bus's is not the end of the queue: they
        // stay hidden for `visibility`, so the next receive gets what is behind them.
        for _ in 0..BATCH {
            let round = self.receive_round(url, calls, wait, visibility).await?;
            if !round.got.is_empty() || round.received == 0 {
                return Ok(round.got);
            }
        }
        Ok(Vec::new())
    }

    /// [`Inner::receive`], also telling how many of its calls came back full (10 messages).
    async fn receive_round(
        &self,
        url: &str,
        calls: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Round, CallError> {
        let wait_secs = i32::try_from(wait.min(MAX_WAIT).as_secs()).unwrap_or(20);
        let rounds: Vec<Result<(Vec<Received>, usize), CallError>> = stream::iter(0..calls.max(1))
            .map(|_| async move {
                let out = self
                    .call_for(
                        Op::Receive,
                        "receive message",
                        Duration::from_secs(u64::try_from(wait_secs).unwrap_or(20)),
                        self.client
                            .receive_message()
                            .queue_url(url)
                            .max_number_of_messages(BATCH as i32)
                            .wait_time_seconds(wait_secs)
                            .visibility_timeout(secs(visibility))
                            .message_system_attribute_names(
                                MessageSystemAttributeName::ApproximateReceiveCount,
                            )
                            .message_system_attribute_names(
                                MessageSystemAttributeName::MessageGroupId,
                            )
                            .message_attribute_names("All")
                            .send(),
                    )
                    .await?;
                let now = Instant::now();
                // One message that is not ours (sent by hand) must not hold back the others of
                // the same receive: it stays with SQS, whose redrive policy dead-letters it.
                let ours = out.messages().iter().filter_map(|m| match received(m, now) {
                    Ok(r) => Some(r),
                    Err(error) => {
                        let id = m.message_id().unwrap_or_default();
                        tracing::warn!(message = id, error = %error.port(), "sqs message passed over");
                        metrics::counter!("bus_foreign_messages_total").increment(1);
                        None
                    }
                });
                Ok::<_, CallError>((ours.collect::<Vec<_>>(), out.messages().len()))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let (mut lists, mut full, mut received) = (Vec::new(), 0, 0);
        let mut errors = Vec::new();
        for r in rounds {
            match r {
                Ok((list, n)) => {
                    full += usize::from(n >= BATCH);
                    received += n;
                    lists.push(list);
                }
                Err(e) => errors.push(e),
            }
        }
        let failed = errors.len();
        if let Some(error) = errors.pop() {
            receive_failed(failed);
            if received == 0 {
                return Err(error);
            }
            // The round goes on with what the other calls brought, so the failure is not the
            // poll's answer: it is told here (a throttled or failing queue otherwise shows only
            // as slower, smaller polls).
            tracing::warn!(
                queue = url,
                failed,
                calls,
                ?error,
                "sqs receive calls failed; going on with what the others brought"
            );
        }
        Ok(Round {
            full,
            received,
            got: merge(lists),
        })
    }

    /// Deletes receipts from `url` in batches of 10; receipts SQS no longer knows are fine.
    async fn delete(&self, url: &str, receipts: &[String]) -> PortResult<()> {
        let chunks: Vec<Vec<String>> = receipts.chunks(BATCH).map(<[String]>::to_vec).collect();
        let results: Vec<PortResult<()>> = stream::iter(chunks)
            .map(|chunk| async move {
                let entries = batch_entries(&chunk, "delete", |id, r| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(id)
                        .receipt_handle(r)
                        .build()
                })?;
                match self
                    .call(
                        Op::Delete,
                        "delete message batch",
                        self.client
                            .delete_message_batch()
                            .queue_url(url)
                            .set_entries(Some(entries))
                            .send(),
                    )
                    .await
                {
                    Ok(out) => {
                        for f in out.failed() {
                            if f.code() != "ReceiptHandleIsInvalid" {
                                return Err(PortError::Unavailable(format!(
                                    "sqs delete: {}: {}",
                                    f.code(),
                                    f.message().unwrap_or("")
                                )));
                            }
                        }
                        Ok(())
                    }
                    Err(CallError::NoQueue(_)) => Ok(()),
                    Err(e) => Err(e.port()),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Sets the visibility of receipts on `url`, 10 a call, calls side by side: the receipts
    /// SQS accepted, and the calls that failed (one failing call does not stop the others).
    async fn set_visibility(&self, url: &str, receipts: &[String], timeout: i32) -> Changed {
        let chunks: Vec<Vec<String>> = receipts.chunks(BATCH).map(<[String]>::to_vec).collect();
        let results: Vec<Result<Vec<String>, CallError>> = stream::iter(chunks)
            .map(|chunk| async move {
                let entries = batch_entries(&chunk, "visibility", |id, r| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(id)
                        .receipt_handle(r)
                        .visibility_timeout(timeout)
                        .build()
                })
                .map_err(|e| CallError::Other(e.to_string()))?;
                let out = self
                    .call(
                        Op::Visibility,
                        "change message visibility batch",
                        self.client
                            .change_message_visibility_batch()
                            .queue_url(url)
                            .set_entries(Some(entries))
                            .send(),
                    )
                    .await?;
                Ok(out
                    .successful()
                    .iter()
                    .filter_map(|ok| ok.id().parse::<usize>().ok().and_then(|i| chunk.get(i)))
                    .cloned()
                    .collect())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut changed = Changed::default();
        for r in results {
            match r {
                Ok(done) => changed.done.extend(done),
                Err(e) => changed.failed.push(e),
            }
        }
        changed
    }

    /// Keeps handed-out deliveries invisible while their consumer holds them: up to `max_hold`,
    /// or until it polls the group again. Every queue is extended even when some fail (a
    /// throttled or deleted queue must not let the others' deliveries lapse); the failures are
    /// counted (`bus_visibility_extension_failures_total`) and returned together.
    async fn extend(&self) -> PortResult<()> {
        let vis = self.config.visibility_timeout;
        let now = Instant::now();
        let mut due: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let mut held = lock(&self.held);
            for h in held.values_mut() {
                // Forget deliveries whose time ran out: SQS hands them out again.
                h.out.retain(|id, o| {
                    let live = o.visible_until > now;
                    if !live && o.hold_until > now {
                        self.lapse(id);
                    }
                    live
                });
                for o in h.out.values() {
                    if o.hold_until > now && o.visible_until < now + vis * 2 / 3 {
                        due.entry(o.url.clone())
                            .or_default()
                            .push(o.receipt.clone());
                    }
                }
            }
        }
        let results: Vec<(String, Changed, Instant)> = stream::iter(due)
            .map(|(url, receipts)| async move {
                // SQS starts the new timeout when it takes the call, after this.
                let sent = Instant::now();
                let changed = self.set_visibility(&url, &receipts, secs(vis)).await;
                (url, changed, sent + vis)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut failed = Vec::new();
        let mut held = lock(&self.held);
        for (url, changed, until) in results {
            let gone = changed
                .failed
                .iter()
                .any(|e| matches!(e, CallError::NoQueue(_)));
            for h in held.values_mut() {
                if gone {
                    // The queue is gone, and its messages with it: nothing left to hold.
                    h.out.retain(|_, o| o.url != url);
                    continue;
                }
                for o in h.out.values_mut() {
                    if o.url == url && changed.done.contains(&o.receipt) {
                        o.visible_until = o.visible_until.max(until);
                    }
                }
            }
            if gone {
                tracing::warn!(queue = %url, "sqs queue gone; its held deliveries are forgotten");
            }
            failed.extend(
                changed
                    .failed
                    .into_iter()
                    .filter(|e| !matches!(e, CallError::NoQueue(_))),
            );
        }
        drop(held);
        if failed.is_empty() {
            return Ok(());
        }
        metrics::counter!("bus_visibility_extension_failures_total", "bus" => "sqs")
            .increment(failed.len() as u64);
        let n = failed.len();
        let first = failed.swap_remove(0).port();
        Err(PortError::Unavailable(format!(
            "{n} visibility extension call(s) failed, first: {first}"
        )))
    }

    /// Hands out buffered messages to `consumer`, in order, up to `max`: skips keys another
    /// consumer of this process holds, drops messages about to become visible again in SQS.
    fn take(
        &self,
        topic: &str,
        group: &str,
        url: &str,
        consumer: &str,
        max: usize,
        out: &mut Vec<Delivery>,
    ) {
        let now = Instant::now();
        let vis = self.config.visibility_timeout;
        let hold = self.config.max_hold;
        let ttl = (vis / 3).min(BUFFER_TTL_MAX);
        let mut held = lock(&self.held);
        let h = held
            .entry((topic.to_owned(), group.to_owned()))
            .or_default();
        h.buffer.retain(|r| r.received_at + ttl > now);
        // Deliveries whose time ran out long ago: SQS has handed them out again.
        h.out.retain(|_, o| o.visible_until + vis > now);
        let held = h.out.values().filter(|o| o.visible_until > now);
        let busy = held_by_others(
            consumer,
            held.map(|o| (o.consumer.as_str(), o.key.as_str())),
        );
        let buffer = std::mem::take(&mut h.buffer);
        let hand = |r: Received, out: &mut Vec<Delivery>| {
            if let Some(o) = h
                .out
                .get_mut(&r.message_id)
                .filter(|o| o.consumer == consumer)
            {
                if out.iter().any(|d| d.id == r.message_id) {
                    // Received again while this poll was still filling: one delivery, the
                    // newest receipt.
                    o.receipt = r.receipt;
                    o.visible_until = r.received_at + vis;
                    return;
                }
            }
            out.push(Delivery {
                id: r.message_id.clone(),
                key: r.key.clone(),
                payload: r.payload.clone(),
                deliveries: r.deliveries,
            });
            h.out.insert(
                r.message_id,
                Out {
                    url: url.to_owned(),
                    receipt: r.receipt,
                    key: r.key,
                    consumer: consumer.to_owned(),
                    hold_until: now + hold,
                    visible_until: r.received_at + vis,
                },
            );
        };
        h.buffer = hand_out(buffer, |r| &r.key, &busy, max, out, hand);
    }

    /// Ends the hold of what `consumer` was handed of the group before: a consumer polls
    /// again once it is done with its last batch, so what it did not ack it gave up. Those
    /// deliveries are no longer extended and come back when their visibility runs out, at
    /// most a visibility timeout from now (not `max_hold`).
    fn release(&self, topic: &str, group: &str, consumer: &str) {
        let now = Instant::now();
        if let Some(h) = lock(&self.held).get_mut(&(topic.to_owned(), group.to_owned())) {
            for o in h.out.values_mut().filter(|o| o.consumer == consumer) {
                o.hold_until = o.hold_until.min(now);
            }
        }
    }

    /// How many receive rounds of the group this process has done, and how many received
    /// messages wait in its buffer.
    fn buffer_state(&self, topic: &str, group: &str) -> (u64, usize) {
        lock(&self.held)
            .get(&(topic.to_owned(), group.to_owned()))
            .map_or((0, 0), |h| (h.rounds, h.buffer.len()))
    }

    async fn poll_once(&self, request: PollRequest<'_>) -> Result<Vec<Delivery>, CallError> {
        let PollRequest {
            topic,
            group,
            consumer,
            max,
            wait,
        } = request;
        self.release(topic, group, consumer);
        let q = self
            .group(topic, group, true)
            .await
            .map_err(|e| CallError::Other(e.to_string()))?
            .ok_or_else(|| CallError::Other("sqs group queue missing".into()))?;
        let until = Instant::now() + wait;
        // Once a poll holds messages it fills for at most a third of the visibility timeout, so
        // that what it hands out is not visible to SQS again before its consumer can ack it
        // (and no later round of the same poll receives it a second time).
        let fill = (self.config.visibility_timeout / 3).min(BUFFER_TTL_MAX);
        let mut filling_since: Option<Instant> = None;
        let mut out = Vec::new();
        let mut tried = false;
        // Calls of the next round once something is in hand (see [`next_round`]).
        let mut calls = 1;
        loop {
            let (seen, _) = self.buffer_state(topic, group);
            self.take(topic, group, &q.url, consumer, max, &mut out);
            let now = Instant::now();
            if out.len() >= max || (!out.is_empty() && calls == 0) {
                break;
            }
            if !out.is_empty() && now >= *filling_since.get_or_insert(now) + fill {
                break;
            }
            if out.is_empty() && tried && now >= until {
                break;
            }
            let turn = lock(&self.receiving)
                .entry((topic.to_owned(), group.to_owned()))
                .or_default()
                .clone();
            let _turn = turn.lock().await;
            let (rounds, buffered) = self.buffer_state(topic, group);
            if rounds != seen {
                // Another poll of this process received for the group while this one waited
                // for its turn (a long poll, maybe): take what it left. That receive counts as
                // this poll's try.
                tried = true;
                continue;
            }
            let left = until.saturating_duration_since(Instant::now());
            // With nothing in hand or buffered: one long poll of at least a second (see
            // [`long_poll_wait`]), unless the caller asked for no wait at all. With some: short
            // polls side by side while the last round came back full. Buffered messages whose
            // key another consumer holds: short polls a nap apart, so they go out once it acks.
            let long = out.is_empty() && buffered == 0 && !wait.is_zero();
            let n = if out.is_empty() {
                1
            } else {
                calls.clamp(1, CONCURRENCY)
            };
            let round = self
                .receive_round(
                    &q.url,
                    n,
                    if long {
                        long_poll_wait(left)
                    } else {
                        Duration::ZERO
                    },
                    self.config.visibility_timeout,
                )
                .await;
            let round = match round {
                Ok(round) => round,
                // What this poll already handed out is the consumer's now: returning an error
                // would strand it in `held` (extended up to `max_hold`, its FIFO group locked
                // all that time). Hand it over; the next poll meets the error again.
                Err(error) if !out.is_empty() => {
                    tracing::warn!(
                        queue = %q.url,
                        ?error,
                        "sqs receive failed while filling a poll; the poll ends with what it has"
                    );
                    break;
                }
                Err(error) => return Err(error),
            };
            tried = true;
            let last_empty = round.got.is_empty();
            calls = next_round(round.full, max.saturating_sub(out.len()));
            {
                let mut held = lock(&self.held);
                let h = held
                    .entry((topic.to_owned(), group.to_owned()))
                    .or_default();
                h.buffer.extend(round.got);
                h.rounds += 1;
            }
            if last_empty && out.is_empty() && !long {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(left.min(NAP)).await;
            }
        }
        Ok(out)
    }

    /// Moves everything in `from` to the queues `to` (keeping each message's deduplication id
    /// unless `fresh`), deleting it from `from` once every target has it. Returns how many.
    async fn move_all(&self, from: &str, to: &BTreeSet<String>, fresh: bool) -> PortResult<u64> {
        // A receive can come back short while more is waiting: only an empty one ends it.
        drain_in_chunks(1, || self.move_some(from, to, fresh)).await
    }

    /// One receive's worth of [`Inner::move_all`]: how many it moved, 0 once `from` is empty.
    async fn move_some(&self, from: &str, to: &BTreeSet<String>, fresh: bool) -> PortResult<u64> {
        let got = self
            .receive(from, 1, Duration::ZERO, self.config.call_timeout * 4)
            .await
            .map_err(CallError::port)?;
        if got.is_empty() {
            return Ok(0);
        }
        let messages: Vec<Message> = got
            .iter()
            .map(|r| Message {
                id: r.id.clone(),
                key: r.key.clone(),
                payload: r.payload.clone(),
            })
            .collect();
        let deadline = Instant::now() + self.config.publish_deadline;
        let gone = self
            .send_all(
                to,
                &messages,
                |m| {
                    if fresh {
                        names::replay_dedup_id()
                    } else {
                        names::dedup_id(&m.id)
                    }
                },
                deadline,
            )
            .await?;
        let receipts: Vec<String> = got.iter().map(|r| r.receipt.clone()).collect();
        if !gone.is_empty() {
            // A target queue is gone: deleting the messages from `from` would lose them where
            // they did not arrive (a replay's dead letters). Leave them, visible again at once
            // for the next try; the targets are listed again before it. What reached the other
            // targets is dropped there as a duplicate if sent again within five minutes.
            lock(&self.groups).retain(|_, q| !gone.contains(&q.url));
            lock(&self.topics).retain(|_, t| t.urls.iter().all(|u| !gone.contains(u)));
            let _ = self.set_visibility(from, &receipts, 0).await;
            return Err(PortError::Unavailable(format!(
                "sqs queues {gone:?} are gone; {} messages left where they were",
                got.len()
            )));
        }
        self.delete(from, &receipts).await?;
        Ok(got.len() as u64)
    }

    /// Sends one publish (or several queued ones together) to the topic's group queues,
    /// retrying refused entries until `deadline`.
    async fn publish_now(
        &self,
        topic: &str,
        messages: Vec<Message>,
        deadline: Instant,
    ) -> PortResult<()> {
        let inner = self;
        let mut targets = inner.targets(topic).await?;
        if targets.is_empty() {
            let holding = inner
                .holding_queue(topic, true)
                .await?
                .ok_or_else(|| PortError::Unavailable("sqs holding queue missing".into()))?;
            targets.insert(holding);
        }
        let gone = inner
            .send_all(&targets, &messages, |m| names::dedup_id(&m.id), deadline)
            .await?;
        if !gone.is_empty() {
            // A group queue was deleted (its group is gone) or SQS lost it: list again; a lost
            // holding queue is created again.
            tracing::warn!(
                topic,
                ?gone,
                "sqs queues disappeared; listing the topic again"
            );
            inner.forget_topic(topic);
            let mut retry: BTreeSet<String> = inner.targets(topic).await?;
            retry.retain(|u| gone.contains(u));
            if retry.is_empty() && inner.targets(topic).await?.is_empty() {
                if let Some(h) = inner.holding_queue(topic, true).await? {
                    retry.insert(h);
                }
            }
            if !retry.is_empty() {
                let still = inner
                    .send_all(&retry, &messages, |m| names::dedup_id(&m.id), deadline)
                    .await?;
                if !still.is_empty() {
                    return Err(PortError::Unavailable(format!(
                        "sqs queues {still:?} vanished during publish"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The redrive policy the bus gives a group queue: to `dlq_arn` after `max` receives.
fn redrive_policy(dlq_arn: &str, max: u32) -> String {
    format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max}"}}"#)
}

/// The redrive policy to set on a group queue whose own is `current` (`""` if none): `None`
/// when it already sends to `dlq_arn` after `max` receives.
pub(crate) fn redrive_change(current: &str, dlq_arn: &str, max: u32) -> Option<String> {
    let (target, count) = redrive_of(current);
    if target.as_deref() == Some(dlq_arn) && count == Some(max) {
        return None;
    }
    Some(redrive_policy(dlq_arn, max))
}

/// The dead-letter target ARN and `maxReceiveCount` of a redrive policy (JSON; the count a
/// number or a string), whichever it names.
fn redrive_of(policy: &str) -> (Option<String>, Option<u32>) {
    let flat: String = policy.chars().filter(|c| !c.is_whitespace()).collect();
    let after = |field: &str| {
        flat.split_once(&format!("\"{field}\":"))
            .map(|(_, rest)| rest.trim_start_matches('"').to_owned())
    };
    let target = after("deadLetterTargetArn")
        .and_then(|rest| rest.split('"').next().map(str::to_owned))
        .filter(|arn| !arn.is_empty());
    let max = after("maxReceiveCount").and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    (target, max)
}

/// A received SQS message, or why it cannot be one of ours.
fn received(m: &aws_sdk_sqs::types::Message, now: Instant) -> Result<Received, CallError> {
    let bad = |what: &str| CallError::Other(format!("sqs message without {what}"));
    let attr = |name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_owned)
    };
    let system =
        |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(m.body().unwrap_or_default())
        .map_err(|_| bad("a base64 body"))?;
    let key = attr(ATTR_KEY)
        .or_else(|| system(MessageSystemAttributeName::MessageGroupId))
        .ok_or_else(|| bad("a key"))?;
    Ok(Received {
        message_id: m.message_id().ok_or_else(|| bad("an id"))?.to_owned(),
        receipt: m
            .receipt_handle()
            .ok_or_else(|| bad("a receipt"))?
            .to_owned(),
        key,
        id: attr(ATTR_ID).unwrap_or_default(),
        payload: payload.into(),
        deliveries: system(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        order: attr(ATTR_ORDER).unwrap_or_default(),
        received_at: now,
    })
}

/// Merges received lists into one: each key's messages stay in the order SQS gave them (one
/// group's order), keys are interleaved by the publisher's order stamp.
///
/// SQS never hands one group's messages to two calls at once; an emulator whose receives are
/// not atomic (moto) may, and may even hand one message to both. Then the copy is dropped and
/// the key's messages, gathered from several calls, are put in stamp order.
fn merge(lists: Vec<Vec<Received>>) -> Vec<Received> {
    let mut runs: Vec<VecDeque<Received>> = Vec::new();
    // Key → (its run, the call it came from, whether several calls returned it).
    let mut by_key: HashMap<String, (usize, usize, bool)> = HashMap::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (call, list) in lists.into_iter().enumerate() {
        for r in list {
            if !seen.insert(r.message_id.clone()) {
                continue;
            }
            match by_key.get_mut(&r.key) {
                Some((i, from, mixed)) => {
                    *mixed |= *from != call;
                    runs[*i].push_back(r);
                }
                None => {
                    by_key.insert(r.key.clone(), (runs.len(), call, false));
                    runs.push(VecDeque::from([r]));
                }
            }
        }
    }
    for (i, _, mixed) in by_key.values() {
        if *mixed {
            runs[*i]
                .make_contiguous()
                .sort_by(|a, b| a.order.cmp(&b.order));
        }
    }
    let mut out = Vec::new();
    loop {
        let best = runs
            .iter()
            .enumerate()
            .filter_map(|(i, run)| run.front().map(|r| (i, r.order.as_str())))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        let Some(i) = best else {
            return out;
        };
        if let Some(r) = runs[i].pop_front() {
            out.push(r);
        }
    }
}

/// Splits a publish into lanes of chunks of at most 10 message indexes. A publish of up to 10
/// is one chunk in publish order. A bigger one is ordered by key (each key keeping its order),
/// cut into chunks of 10, and chunks that share a key are chained in one lane, to be sent one
/// after the other; lanes go out side by side. There are always `ceil(n / 10)` chunks.
pub(crate) fn plan(messages: &[Message]) -> Vec<Vec<Vec<usize>>> {
    if messages.is_empty() {
        return Vec::new();
    }
    if messages.len() <= BATCH {
        return vec![vec![(0..messages.len()).collect()]];
    }
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by(|&a, &b| messages[a].key.cmp(&messages[b].key));
    let mut lanes: Vec<Vec<Vec<usize>>> = Vec::new();
    for chunk in order.chunks(BATCH) {
        let first = &messages[chunk[0]].key;
        let joins = lanes
            .last()
            .and_then(|lane| lane.last())
            .and_then(|prev| prev.last())
            .is_some_and(|&last| &messages[last].key == first);
        match lanes.last_mut() {
            Some(lane) if joins => lane.push(chunk.to_vec()),
            _ => lanes.push(vec![chunk.to_vec()]),
        }
    }
    lanes
}

#[async_trait]
impl Bus for SqsBus {
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        let inner = &self.inner;
        inner.create_group(topic, group).await?;
        // Messages published before the topic had any group wait in its holding queue.
        if let Some(holding) = inner.holding_queue(topic, false).await? {
            lock(&inner.topics).remove(topic);
            let targets = inner.targets(topic).await?;
            let moved = inner.move_all(&holding, &targets, false).await?;
            if moved > 0 {
                tracing::info!(
                    topic,
                    group,
                    messages = moved,
                    "moved held messages to the groups"
                );
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let n = messages.len();
        let inner = &self.inner;
        let deadline_for = inner.config.publish_deadline;
        // A publish bigger than one send gets the deadline once per send it takes.
        let sends = sends_of(n, inner.known_groups(topic));
        let allowed = deadline_for.checked_mul(sends).unwrap_or(MAX_WAIT);
        let now = Instant::now();
        let deadline = now.checked_add(allowed).unwrap_or(now + MAX_WAIT);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut boxes = lock(&inner.outboxes);
            let b = boxes.entry(topic.to_owned()).or_default();
            b.queued.push_back(Queued {
                messages,
                reply: tx,
                deadline,
            });
            !std::mem::replace(&mut b.sending, true)
        };
        if lead {
            // A task of its own, so that a cancelled caller never strands the others.
            tokio::spawn(send_queued(inner.clone(), topic.to_owned()));
        }
        // Answered at its own deadline at the latest, however long the publishes queued before
        // it take: a send that goes on may still store its messages (a retry of the same ids is
        // then dropped by SQS as a duplicate).
        let result = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PortError::Unavailable(
                "sqs publish: the sending task stopped".into(),
            )),
            Err(_) => Err(PortError::Unavailable(format!(
                "sqs publish: not stored within its deadline {allowed:?}"
            ))),
        };
        if result.is_ok() {
            metrics::counter!("bus_published_total").increment(n as u64);
        }
        result
    }

    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>> {
        let inner = &self.inner;
        match inner.poll_once(request).await {
            Ok(got) => Ok(got),
            Err(CallError::NoQueue(_)) => {
                // SQS lost the queue (deleted, emulator restarted): create it again, once.
                inner.forget_group(request.topic, request.group);
                inner.forget_topic(request.topic);
                inner.poll_once(request).await.map_err(CallError::port)
            }
            Err(e) => Err(e.port()),
        }
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
        let inner = &self.inner;
        let key = (topic.to_owned(), group.to_owned());
        let mut by_url: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        {
            let held = lock(&inner.held);
            let Some(h) = held.get(&key) else {
                return Ok(());
            };
            for id in ids {
                if let Some(o) = h.out.get(id) {
                    by_url
                        .entry(o.url.clone())
                        .or_default()
                        .push((id.clone(), o.receipt.clone()));
                }
            }
        }
        for (url, entries) in by_url {
            let receipts: Vec<String> = entries.iter().map(|(_, r)| r.clone()).collect();
            inner.delete(&url, &receipts).await?;
            let mut held = lock(&inner.held);
            if let Some(h) = held.get_mut(&key) {
                for (id, receipt) in &entries {
                    if h.out.get(id).is_some_and(|o| &o.receipt == receipt) {
                        h.out.remove(id);
                    }
                }
            }
        }
        Ok(())
    }

    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        let inner = &self.inner;
        let Some(q) = inner.group(topic, group, false).await? else {
            return Ok(0);
        };
        // Both reads at once: the dead letters' count does not add its wait to the lag's.
        let (lag, ()) = tokio::join!(
            inner.message_count(&q.url),
            inner.count_dead_letters(topic, group, &q.dlq)
        );
        match lag {
            Ok(n) => Ok(n),
            Err(CallError::NoQueue(_)) => {
                inner.forget_group(topic, group);
                Ok(0)
            }
            Err(e) => Err(e.port()),
        }
    }

    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>> {
        let (topic, group, limit) = (request.topic, request.group, request.limit);
        let inner = &self.inner;
        let Some(q) = inner.group(topic, group, false).await? else {
            return Ok(Vec::new());
        };
        // Peek: receive (hiding them for a moment), then make them visible again.
        let mut lists = Vec::new();
        let mut total = 0;
        while total < limit {
            let got = inner
                .receive(&q.dlq, 1, Duration::ZERO, inner.config.call_timeout * 4)
                .await
                .map_err(CallError::port)?;
            if got.is_empty() {
                break;
            }
            total += got.len();
            lists.push(got);
        }
        let all = merge(lists);
        // What the queue enforces (Terraform may hold another count, or the role may not
        // have been allowed to change it), not what this process was configured with.
        let max_receives = if all.is_empty() {
            inner.config.max_deliveries
        } else {
            inner.max_receives(&q.url).await
        };
        let receipts: Vec<String> = all.iter().map(|r| r.receipt.clone()).collect();
        if let Some(e) = inner
            .set_visibility(&q.dlq, &receipts, 0)
            .await
            .failed
            .pop()
        {
            return Err(e.port());
        }
        Ok(all
            .into_iter()
            .take(limit)
            .map(|r| Delivery {
                id: r.message_id,
                key: r.key,
                payload: r.payload,
                deliveries: max_receives,
            })
            .collect())
    }

    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        let inner = &self.inner;
        let Some(q) = inner.group(topic, group, false).await? else {
            return Ok(0);
        };
        inner
            .move_all(&q.dlq, &BTreeSet::from([q.url.clone()]), true)
            .await
    }
}

#[async_trait]
impl Health for SqsBus {
    async fn healthcheck(&self) -> PortResult<()> {
        self.inner.healthcheck().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(key: &str) -> Message {
        Message {
            id: String::new(),
            key: key.to_owned(),
            payload: Bytes::new(),
        }
    }

    fn rec(key: &str, order: &str) -> Received {
        Received {
            message_id: format!("{key}{order}"),
            receipt: String::new(),
            key: key.to_owned(),
            id: String::new(),
            payload: Bytes::new(),
            deliveries: 1,
            order: order.to_owned(),
            received_at: Instant::now(),
        }
    }

    #[test]
    fn a_small_publish_is_one_chunk_in_publish_order() {
        let msgs: Vec<Message> = ["b", "a", "b"].iter().map(|k| m(k)).collect();
        assert_eq!(plan(&msgs), vec![vec![vec![0, 1, 2]]]);
        assert!(plan(&[]).is_empty());
    }

    #[test]
    fn a_big_publish_takes_ceil_n_over_10_chunks_and_chains_split_keys() {
        // 25 messages: key "a" × 12 (split over two chunks), then 13 single keys.
        let mut msgs: Vec<Message> = (0..12).map(|_| m("a")).collect();
        msgs.extend((0..13).map(|i| m(&format!("k{i:02}"))));
        let lanes = plan(&msgs);
        let chunks: usize = lanes.iter().map(Vec::len).sum();
        assert_eq!(chunks, 3);
        assert_eq!(
            lanes[0].len(),
            2,
            "the two chunks holding key a are one lane"
        );
        assert_eq!(
            lanes[0][0],
            (0..10).collect::<Vec<_>>(),
            "a keeps its order"
        );
        assert_eq!(&lanes[0][1][..2], &[10, 11]);
        assert!(lanes.iter().flatten().all(|c| c.len() <= BATCH));
        let mut all: Vec<usize> = lanes.into_iter().flatten().flatten().collect();
        all.sort_unstable();
        assert_eq!(all, (0..25).collect::<Vec<_>>());
    }

    fn queued(
        n: usize,
        deadline: Instant,
    ) -> (Queued, tokio::sync::oneshot::Receiver<PortResult<()>>) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let messages = (0..n).map(|i| m(&format!("k{i}"))).collect();
        (
            Queued {
                messages,
                reply,
                deadline,
            },
            rx,
        )
    }

    #[test]
    fn a_send_takes_queued_publishes_in_order_up_to_its_calls() {
        let now = Instant::now();
        let later = now + Duration::from_secs(2);
        let mut waiting = Vec::new();
        let mut q = VecDeque::new();
        // Two groups: 150 + 150 messages are 60 calls; a third 150 would make 90 > 64.
        for n in [150, 150, 150, 10] {
            let (p, rx) = queued(n, later);
            q.push_back(p);
            waiting.push(rx);
        }
        let (taken, stale) = next_send(&mut q, 2, now);
        let sizes: Vec<usize> = taken.iter().map(|p| p.messages.len()).collect();
        assert_eq!(sizes, [150, 150]);
        assert!(stale.is_empty());
        assert_eq!(q.len(), 2, "the rest waits for the next send, in order");
        assert_eq!(q[0].messages.len(), 150);
        // A publish bigger than a send goes alone.
        let (big, _rx) = queued(2048, later);
        let mut q = VecDeque::from([big]);
        let (taken, _) = next_send(&mut q, 2, now);
        assert_eq!(taken.len(), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn a_publish_past_its_deadline_or_left_by_its_caller_is_not_sent() {
        let now = Instant::now();
        let (expired, _rx1) = queued(5, now);
        let (left, rx2) = queued(5, now + Duration::from_secs(2));
        drop(rx2);
        let (fresh, _rx3) = queued(5, now + Duration::from_secs(2));
        let mut q = VecDeque::from([expired, left, fresh]);
        let (taken, stale) = next_send(&mut q, 1, now);
        assert_eq!((taken.len(), stale.len()), (1, 2));
        assert!(q.is_empty());
    }

    #[test]
    fn a_publish_gets_its_deadline_once_per_send_it_takes() {
        assert_eq!(send_calls(25, 3), 9);
        // A gateway's batch of 500 to one group: 50 calls, one send.
        assert_eq!(sends_of(500, 1), 1);
        assert_eq!(sends_of(1, 0), 1);
        assert_eq!(sends_of(SEND_CALLS * BATCH, 1), 1);
        assert_eq!(sends_of(SEND_CALLS * BATCH + 1, 1), 2);
        // The fairness batch of 2048 to two groups: 410 calls, 7 sends.
        assert_eq!(sends_of(2048, 2), 7);
    }

    #[test]
    fn a_fill_round_follows_only_full_calls() {
        // Nothing full: every free group was drained, the poll ends.
        assert_eq!(next_round(0, 2048), 0);
        // Full calls double, up to the concurrency and to what is still wanted.
        assert_eq!(next_round(1, 2048), 2);
        assert_eq!(next_round(3, 2048), 6);
        assert_eq!(next_round(8, 2048), CONCURRENCY);
        assert_eq!(next_round(4, 15), 2);
        assert_eq!(next_round(1, 0), 0);
    }

    #[test]
    fn a_long_poll_waits_whole_seconds_rounded_up_from_1_to_20() {
        let ms = Duration::from_millis;
        assert_eq!(long_poll_wait(ms(0)), ms(1000));
        assert_eq!(long_poll_wait(ms(200)), ms(1000));
        assert_eq!(long_poll_wait(ms(1000)), ms(1000));
        assert_eq!(long_poll_wait(ms(1001)), ms(2000));
        assert_eq!(long_poll_wait(Duration::from_secs(60)), MAX_WAIT);
    }

    #[test]
    fn a_redrive_policy_names_its_target_and_count_as_aws_or_moto_write_it() {
        let arn = "arn:aws:sqs:eu-west-1:1:x-dlq.fifo";
        for policy in [
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":10}}"#),
            format!(r#"{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": "10"}}"#),
        ] {
            assert_eq!(redrive_of(&policy), (Some(arn.to_owned()), Some(10)));
        }
        assert_eq!(redrive_of(""), (None, None));
    }

    #[test]
    fn a_redrive_policy_is_set_only_when_its_target_or_count_differ() {
        let arn = "arn:aws:sqs:us-east-1:1:t-x-g-dlq.fifo";
        let wanted = Some(redrive_policy(arn, 3));
        // As the bus writes it, and as AWS or moto give it back (a number, spaces): matches.
        for same in [
            redrive_policy(arn, 3),
            format!(r#"{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": 3}}"#),
        ] {
            assert_eq!(redrive_change(&same, arn, 3), None, "{same}");
        }
        // Another count (BUS_MAX_DELIVERIES changed), another target, none at all: set.
        assert_eq!(redrive_change(&redrive_policy(arn, 5), arn, 3), wanted);
        let elsewhere = redrive_policy("arn:aws:sqs:us-east-1:2:t-x-g-dlq.fifo", 3);
        assert_eq!(redrive_change(&elsewhere, arn, 3), wanted);
        assert_eq!(redrive_change("", arn, 3), wanted);
    }

    #[test]
    fn only_a_refusal_for_permissions_counts_as_refused() {
        use aws_sdk_sqs::error::ErrorMetadata;
        use aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesError;
        // The SDK's own error as AWS's answer builds it (code from `x-amzn-query-error`).
        let code = |c: &str| {
            SetQueueAttributesError::generic(ErrorMetadata::builder().code(c).build())
                .code()
                .map(str::to_owned)
        };
        for c in ["AccessDenied", "AccessDeniedException", "NotAuthorized"] {
            assert!(refused(code(c).as_deref(), Some(403)), "{c}");
            assert!(refused(code(c).as_deref(), None), "{c} without a status");
        }
        // moto's refusal: a 403 whose body the SDK cannot read, so no code.
        assert!(refused(None, Some(403)));
        // Bad credentials, throttling, a bad request, no answer: not a refusal.
        for (c, status) in [
            ("InvalidClientTokenId", Some(403)),
            ("SignatureDoesNotMatch", Some(403)),
            ("ExpiredToken", Some(400)),
            ("RequestThrottled", Some(400)),
            ("InvalidAttributeValue", Some(400)),
        ] {
            assert!(!refused(code(c).as_deref(), status), "{c}");
        }
        assert!(!refused(None, Some(500)));
        assert!(!refused(None, None));
    }

    #[test]
    fn merging_keeps_each_keys_order_and_interleaves_by_stamp() {
        // SQS (one call) clusters a group: p1's three first, then p2 and p3.
        let one = vec![
            rec("p1", "1"),
            rec("p1", "3"),
            rec("p1", "5"),
            rec("p2", "2"),
            rec("p3", "4"),
        ];
        let merged: Vec<String> = merge(vec![one]).into_iter().map(|r| r.order).collect();
        assert_eq!(merged, ["1", "2", "3", "4", "5"]);
        // A stamp out of order within one key (clock skew between publishers) never reorders it.
        let skew = vec![rec("p1", "9"), rec("p1", "2"), rec("p2", "5")];
        let keys: Vec<(String, String)> = merge(vec![skew])
            .into_iter()
            .map(|r| (r.key, r.order))
            .collect();
        assert_eq!(
            keys,
            [
                ("p2".into(), "5".into()),
                ("p1".into(), "9".into()),
                ("p1".into(), "2".into())
            ]
        );
    }
}
