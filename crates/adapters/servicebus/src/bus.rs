//! [`ServiceBusBus`]: the [`Bus`] over AMQP 1.0. The design is in the crate docs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::{DeliveryFut, DeliveryInfo};
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::{ReceiverAttachError, SendError};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{Body, Message, MessageId, Outcome, Target};
use fe2o3_amqp::types::primitives::{SimpleValue, Value};
use fe2o3_amqp::{Connection, Delivery as AmqpDelivery, Receiver, Sender, Session};
use liveops_core::ports::{
    drain_in_chunks, every_while_alive, DeadLetterRequest, Delivery, Message as BusMessage,
    PollRequest,
};
use liveops_core::{Bus, Health, PortError, PortResult};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{config_error, BusError, Mode, ServiceBusConfig};
use crate::frames;
use crate::sas;

mod receive;

use receive::Group;

/// How long `dead_letters` and replay wait for the dead-letter queue to hand out more.
const DLQ_WAIT: Duration = Duration::from_millis(300);

/// Most dead letters one replay step moves.
const REPLAY_CHUNK: u32 = 100;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding these locks; recover the data if one ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unavailable(what: &str, e: impl fmt::Display) -> PortError {
    PortError::Unavailable(format!("amqp {what}: {e}"))
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs one broker round trip, bounded by `limit`.
async fn bounded<T, E: fmt::Display>(
    what: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> PortResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(what, e)),
        Err(_) => Err(PortError::Unavailable(format!(
            "amqp {what}: no answer within {limit:?}"
        ))),
    }
}

/// How a step of a publish failed.
enum Failed {
    /// The link failed.
    Error(PortError),
    /// The publish's time ran out.
    Late(PortError),
}

/// Runs one step of a publish that must end by `deadline`.
async fn until<T, E: fmt::Display>(
    what: &str,
    deadline: Instant,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, Failed> {
    match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failed::Error(unavailable(what, e))),
        Err(_) => Err(Failed::Late(PortError::Unavailable(format!(
            "amqp {what}: no answer within the call timeout"
        )))),
    }
}

/// A request/response pair of links to a node (`$cbs`, `<entity>/$management`).
struct Requester {
    sender: Sender,
    receiver: Receiver,
    reply_to: String,
}

/// A link the calls that use it share, one at a time.
type Shared<T> = Arc<tokio::sync::Mutex<T>>;

/// The outcome of one transfer on a topic's link, once the broker settles it.
type Outcomes = DeliveryFut<Result<Outcome, SendError>>;

/// A topic's sender link: publishes take turns on it only to send their transfers (see
/// [`Inner::send`]), and each notes when the broker last answered on it.
struct TopicLink {
    sender: tokio::sync::Mutex<Sender>,
    /// When the link was attached or an outcome last came back on it.
    heard: Mutex<Instant>,
}

impl TopicLink {
    /// Notes an answer of the broker on this link.
    fn heard(&self) {
        *lock(&self.heard) = Instant::now();
    }

    /// How long the broker has answered nothing on this link.
    fn quiet_for(&self) -> Duration {
        lock(&self.heard).elapsed()
    }
}

/// Waits for the outcomes of transfers whose publish gave up on them (its time ran out behind
/// others) and notes each on `link` as an answer: the broker working through them shows the link
/// alive to the publishes waiting behind them, which would otherwise take it for stalled once
/// no publish waiting on the link is left to hear them, and drop the connection and every publish
/// in flight on it. Stops when the link fails or the broker has answered nothing on it for a
/// whole `limit` (stalled: the publishes on it judge that).
async fn hear_out(link: Arc<TopicLink>, mut pending: VecDeque<Outcomes>, limit: Duration) {
    while let Some(fut) = pending.front_mut() {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(_)) => {
                link.heard();
                pending.pop_front();
            }
            Ok(Err(_)) => return,
            Err(_) if link.quiet_for() < limit => {}
            Err(_) => return,
        }
    }
}

/// The connection, its session, and the links made on it.
struct Live {
    generation: u64,
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    senders: HashMap<String, Arc<TopicLink>>,
    requesters: HashMap<String, Shared<Requester>>,
    /// Audience → when its token expires (unix ms).
    tokens: HashMap<String, i64>,
}

/// The AMQP bus. See the crate docs.
pub struct ServiceBusBus {
    /// The only strong owner: the renewal task holds a `Weak` and ends once the bus is gone.
    inner: Arc<Inner>,
}

struct Inner {
    config: ServiceBusConfig,
    live: tokio::sync::Mutex<Option<Live>>,
    generation: AtomicU64,
    /// Ids of receiver attaches, so a new link on the same connection is told from the old one.
    links: AtomicU64,
    groups: Mutex<HashMap<(String, String), Arc<Group>>>,
}

/// Numbers the names of connections, links and requests, across every bus of the process: two
/// buses in one process (tests) must not share a reply address or a container id.
static NAMES: AtomicU64 = AtomicU64::new(0);

impl fmt::Debug for ServiceBusBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBusBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ServiceBusBus {
    /// Connects (TLS and a SAS token on `$cbs` on Azure) and checks the broker answers within
    /// the call timeout.
    pub async fn connect(config: ServiceBusConfig) -> Result<Self, BusError> {
        if config.max_deliveries == 0 {
            return Err(config_error("max_deliveries must be at least 1"));
        }
        if config.session_links == 0 {
            return Err(config_error("session_links must be at least 1"));
        }
        let inner = Arc::new(Inner {
            config,
            live: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            links: AtomicU64::new(0),
            groups: Mutex::new(HashMap::new()),
        });
        inner.healthcheck().await?;
        let tick = (inner.config.visibility_timeout / 3).max(Duration::from_millis(200));
        tokio::spawn(every_while_alive(
            Arc::downgrade(&inner),
            tick,
            |inner| async move { inner.renew().await },
            |error| tracing::warn!(%error, "amqp lock or token renewal failed; retrying"),
        ));
        Ok(Self { inner })
    }
}

fn sasl(config: &ServiceBusConfig) -> SaslProfile {
    // Azure takes ANONYMOUS and then a token on $cbs; a plain broker takes ANONYMOUS.
    let _ = config;
    SaslProfile::Anonymous
}

impl Inner {
    fn name(&self, what: &str) -> String {
        format!(
            "liveops-{what}-{}-{}",
            std::process::id(),
            NAMES.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Opens the connection and its session.
    async fn open(&self) -> PortResult<Live> {
        let c = &self.config;
        let limit = c.call_timeout;
        let tcp = bounded(
            "connect",
            limit,
            TcpStream::connect((c.host.as_str(), c.port)),
        )
        .await?;
        let _ = tcp.set_nodelay(true);
        let builder = Connection::builder()
            .container_id(self.name("conn"))
            .hostname(c.host.as_str())
            .sasl_profile(sasl(c))
            .idle_time_out(120_000_u32);
        let mut connection = if c.tls {
            let tls = bounded("tls", limit, tls_connect(&c.host, tcp)).await?;
            bounded("open", limit, builder.open_with_stream(tls)).await?
        } else {
            bounded("open", limit, builder.open_with_stream(tcp)).await?
        };
        let session = bounded("begin", limit, Session::begin(&mut connection)).await?;
        metrics::counter!("bus_connections_opened_total").increment(1);
        Ok(Live {
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            connection,
            session,
            senders: HashMap::new(),
            requesters: HashMap::new(),
            tokens: HashMap::new(),
        })
    }

    /// The live connection, opened if there is none; runs `f` on it. The wait for it (while
    /// another call opens it or makes a round trip on it) is bounded by the call timeout.
    async fn with_live<T>(
        &self,
        f: impl for<'a> FnOnce(
            &'a mut Live,
            &'a Self,
        )
            -> std::pin::Pin<Box<dyn Future<Output = PortResult<T>> + Send + 'a>>,
    ) -> PortResult<T> {
        let limit = self.config.call_timeout;
        let Ok(mut guard) = tokio::time::timeout(limit, self.live.lock()).await else {
            return Err(PortError::Unavailable(format!(
                "amqp: the connection was busy for {limit:?}"
            )));
        };
        if guard.is_none() {
            *guard = Some(self.open().await?);
        }
        let Some(live) = guard.as_mut() else {
            return Err(PortError::Unavailable("amqp: no connection".into()));
        };
        let result = f(live, self).await;
        if result.is_err() {
            // Start over with a new connection next time; links of this one are gone.
            if let Some(mut old) = guard.take() {
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), old.connection.close()).await;
                });
            }
        }
        result
    }

    /// Puts a SAS token for `entity` on `$cbs` unless a fresh one is there (Azure only).
    async fn authorize(&self, live: &mut Live, entity: &str) -> PortResult<()> {
        self.put_token(live, entity, false).await
    }

    /// Puts a SAS token for `entity` on `$cbs`, also when a fresh one is there if `force`
    /// (Azure only). Audiences are never forgotten: renewal refreshes every one put.
    async fn put_token(&self, live: &mut Live, entity: &str, force: bool) -> PortResult<()> {
        let Mode::Azure { key_name, key, .. } = &self.config.mode else {
            return Ok(());
        };
        let audience = frames::audience(&self.config.host, entity);
        let ttl_ms = i64::try_from(self.config.token_ttl.as_millis()).unwrap_or(i64::MAX);
        let now = unix_ms();
        if !force
            && live
                .tokens
                .get(&audience)
                .is_some_and(|exp| exp - now > ttl_ms / 5)
        {
            return Ok(());
        }
        let expiry_ms = now + ttl_ms;
        let token = sas::token(
            &audience,
            key_name,
            key,
            u64::try_from(expiry_ms / 1000).unwrap_or(0),
        );
        let answer = self
            .ask(live, frames::CBS, "cbs", |id, reply_to| {
                frames::put_token(id, reply_to, &audience, &token, expiry_ms)
            })
            .await?;
        let status = status_code(&answer, "status-code");
        if status != Some(200) && status != Some(202) {
            return Err(PortError::Unavailable(format!(
                "service bus refused the token for {audience}: status {status:?}"
            )));
        }
        live.tokens.insert(audience, expiry_ms);
        Ok(())
    }

    /// Sends the request `build(id, reply_to)` to `node` (`what` names its id) and waits for the
    /// answer.
    async fn ask(
        &self,
        live: &mut Live,
        node: &str,
        what: &str,
        build: impl FnOnce(&str, &str) -> Message<Body<Value>>,
    ) -> PortResult<Message<Body<Value>>> {
        let req = self.requester(live, node).await?;
        let mut req = req.lock().await;
        let id = self.name(what);
        let message = build(&id, &req.reply_to);
        request(&mut req, message, &id, self.config.call_timeout).await
    }

    /// The request/response links to `node`, attached on first use.
    async fn requester(&self, live: &mut Live, node: &str) -> PortResult<Shared<Requester>> {
        if let Some(r) = live.requesters.get(node) {
            return Ok(r.clone());
        }
        let limit = self.config.call_timeout;
        let reply_to = self.name("reply");
        let sender = bounded(
            "attach request link",
            limit,
            Sender::attach(&mut live.session, self.name("req"), node.to_owned()),
        )
        .await?;
        let receiver = bounded(
            "attach response link",
            limit,
            Receiver::builder()
                .name(self.name("resp"))
                .source(node.to_owned())
                .target(Target::builder().address(reply_to.clone()).build())
                .credit_mode(CreditMode::Auto(10))
                .auto_accept(true)
                .attach(&mut live.session),
        )
        .await?;
        let r = Arc::new(tokio::sync::Mutex::new(Requester {
            sender,
            receiver,
            reply_to,
        }));
        live.requesters.insert(node.to_owned(), r.clone());
        Ok(r)
    }

    /// The sender to a topic, attached (and authorized) on first use, with the generation of
    /// the connection it is on.
    async fn sender(&self, live: &mut Live, topic: &str) -> PortResult<(u64, Arc<TopicLink>)> {
        if let Some(s) = live.senders.get(topic) {
            return Ok((live.generation, s.clone()));
        }
        self.authorize(live, topic).await?;
        let sender = bounded(
            "attach sender",
            self.config.call_timeout,
            Sender::attach(&mut live.session, self.name("send"), topic.to_owned()),
        )
        .await?;
        let s = Arc::new(TopicLink {
            sender: tokio::sync::Mutex::new(sender),
            heard: Mutex::new(Instant::now()),
        });
        live.senders.insert(topic.to_owned(), s.clone());
        Ok((live.generation, s))
    }

    /// Attaches a receiver on `address` without the session filter.
    async fn attach_receiver(&self, live: &mut Live, address: &str) -> PortResult<Receiver> {
        self.authorize(live, address).await?;
        bounded(
            "attach receiver",
            self.config.call_timeout,
            Receiver::builder()
                .name(self.name("recv"))
                .source(frames::source(address, None))
                .credit_mode(CreditMode::Manual)
                .auto_accept(false)
                .attach(&mut live.session),
        )
        .await
    }

    /// Attaches a receiver on `address` that accepts the next available session, on an AMQP
    /// session of its own, asking the broker to wait up to `wait` for one; `None` when none was
    /// free in that time (the broker refuses the attach with `com.microsoft:timeout`).
    async fn attach_session_receiver(
        &self,
        address: &str,
        wait: Duration,
    ) -> PortResult<Option<(u64, Receiver, SessionHandle<()>)>> {
        let limit = self.config.call_timeout;
        let (connection, mut session) = self
            .with_live(|live, me| {
                let address = address.to_owned();
                Box::pin(async move {
                    me.authorize(live, &address).await?;
                    let session = bounded("begin", limit, Session::begin(&mut live.connection));
                    Ok((live.generation, session.await?))
                })
            })
            .await?;
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
        let attach = Receiver::builder()
            .name(self.name("recv"))
            .source(frames::source(address, Some(None)))
            .properties(frames::session_wait(wait_ms))
            .credit_mode(CreditMode::Manual)
            .auto_accept(false)
            .attach(&mut session);
        let result = match tokio::time::timeout(limit, attach).await {
            Ok(Ok(receiver)) if session_of(&receiver).is_some() => {
                return Ok(Some((connection, receiver, session)))
            }
            Ok(Ok(receiver)) => {
                // Attached without a session: as good as none.
                let _ = tokio::time::timeout(limit, receiver.close()).await;
                Ok(None)
            }
            Ok(Err(ReceiverAttachError::RemoteClosedWithError(e))) if frames::is_timeout(&e) => {
                Ok(None)
            }
            Ok(Err(e)) => Err(unavailable("attach session receiver", e)),
            Err(_) => Err(PortError::Unavailable(format!(
                "amqp attach session receiver: no answer within {limit:?}"
            ))),
        };
        let _ = tokio::time::timeout(limit, session.end()).await;
        result
    }

    async fn healthcheck(&self) -> PortResult<()> {
        let azure = self.config.is_azure();
        self.with_live(|live, me| {
            Box::pin(async move {
                if azure {
                    // A token put to $cbs is a round trip Service Bus must answer. The other
                    // audiences stay: renewal must keep refreshing their links' tokens.
                    me.put_token(live, "", true).await
                } else {
                    let node = frames::management("$health");
                    me.ask(live, &node, "health", frames::message_count)
                        .await
                        .map(|_| ())
                }
            })
        })
        .await
    }

    /// Renews the locks of what consumers hold, then tokens near expiry. A failure ends the
    /// round: it has dropped the connection, and with it every link the rest would renew.
    async fn renew(&self) -> PortResult<()> {
        self.renew_locks().await?;
        self.renew_tokens().await
    }

    /// Puts a fresh token for every audience whose token has a fifth of its lifetime left
    /// (Azure only).
    async fn renew_tokens(&self) -> PortResult<()> {
        if self.config.is_azure() {
            let stale: Vec<String> = {
                let live = self.live.lock().await;
                let ttl_ms = i64::try_from(self.config.token_ttl.as_millis()).unwrap_or(i64::MAX);
                let now = unix_ms();
                live.as_ref()
                    .map(|l| {
                        l.tokens
                            .iter()
                            .filter(|(_, exp)| **exp - now <= ttl_ms / 5)
                            .map(|(a, _)| a.clone())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for audience in stale {
                let prefix = format!("amqp://{}/", self.config.host);
                let entity = audience.strip_prefix(&prefix).unwrap_or("").to_owned();
                self.with_live(|live, me| {
                    Box::pin(async move { me.authorize(live, &entity).await })
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Sends `messages` to `topic`, pipelined on the topic's link, and waits for every outcome:
    /// the wait for the link's turn, the transfers and the outcomes within one call timeout
    /// (after the link was found or attached), `Unavailable` past it.
    ///
    /// The link is held only while this publish's transfers go out, not while their outcomes
    /// come back: each transfer is a delivery of its own, settled by the broker's disposition
    /// for its delivery id, and its outcome future does not need the link. So the publishes of
    /// many callers are pipelined on one link, each one's messages together and in order, and a
    /// caller waits for its turn only while others' transfers are written, not for their round
    /// trips. (Until 2026-12-06 a publish held the link until its outcomes came back, with no
    /// bound on the wait for it: with a 10 ms round trip, 500 concurrent publishes took 5 s for
    /// the last.)
    ///
    /// A publish that fails drops the link and its connection when the link failed, or when its
    /// time ran out and the broker has answered nothing on the link for half a call timeout (a
    /// stalled connection); one whose time ran out while outcomes kept coming (it waited behind
    /// others) fails alone, and the publishes in flight beside it go on. The broker still
    /// answers the transfers such a publish gave up on: those answers count too ([`hear_out`]).
    /// (Until 2026-12-07 only a waiting publish noted them: right after an overload, with every
    /// publish of it gone, the next one that waited behind its backlog found the link quiet and
    /// dropped the connection while the broker was answering all along.)
    async fn send(&self, topic: &str, messages: Vec<Message<Body<Value>>>) -> PortResult<()> {
        let limit = self.config.call_timeout;
        let (generation, link) = self
            .with_live(|live, me| {
                let topic = topic.to_owned();
                Box::pin(async move { me.sender(live, &topic).await })
            })
            .await?;
        // From here: a connection that was just opened is not dropped for the time that took.
        let deadline = Instant::now() + limit;
        let Ok(mut sender) = tokio::time::timeout_at(deadline, link.sender.lock()).await else {
            // Others' transfers held the link all this time (no credit, a stalled connection):
            // not this publish's failure to judge; one of theirs drops the link if it is broken.
            return Err(PortError::Unavailable(format!(
                "amqp send: the link to {topic} was busy for {limit:?}"
            )));
        };
        let mut pending = VecDeque::with_capacity(messages.len());
        let mut sent = Ok(());
        for m in messages {
            match until("send", deadline, sender.send_batchable(m)).await {
                Ok(outcome) => pending.push_back(outcome),
                Err(failed) => {
                    sent = Err(failed);
                    break;
                }
            }
        }
        drop(sender);
        if let Err(failed) = sent {
            return self.send_failed(generation, &link, failed, pending).await;
        }
        let mut refused = None;
        while let Some(mut fut) = pending.pop_front() {
            match until("send outcome", deadline, &mut fut).await {
                Ok(outcome) => {
                    link.heard();
                    if !matches!(outcome, Outcome::Accepted(_)) {
                        refused.get_or_insert(outcome);
                    }
                }
                Err(failed) => {
                    pending.push_front(fut);
                    return self.send_failed(generation, &link, failed, pending).await;
                }
            }
        }
        match refused {
            None => Ok(()),
            // Settled, and the link still good: this publish fails, not the others on it.
            Some(other) => Err(PortError::Unavailable(format!(
                "amqp send: the broker answered {other:?}"
            ))),
        }
    }

    /// A publish that failed: unless only its time ran out while the broker kept answering on
    /// `link`, drops the link (and its connection, unless that is already gone and another one
    /// is current) so the next call starts over. The outcomes of its transfers still `pending`
    /// (sent, not answered yet) are heard out on a link kept. Answers the error.
    async fn send_failed(
        &self,
        generation: u64,
        link: &Arc<TopicLink>,
        failed: Failed,
        pending: VecDeque<Outcomes>,
    ) -> PortResult<()> {
        let (error, broken) = match failed {
            Failed::Error(e) => (e, true),
            Failed::Late(e) => (e, link.quiet_for() >= self.config.call_timeout / 2),
        };
        if !broken {
            if !pending.is_empty() {
                tokio::spawn(hear_out(link.clone(), pending, self.config.call_timeout));
            }
            return Err(error);
        }
        // Not waited for longer than a call: whoever holds it meanwhile finds a broken
        // connection broken too, and the next publish on this one tries again.
        let Ok(mut live) = tokio::time::timeout(self.config.call_timeout, self.live.lock()).await
        else {
            return Err(error);
        };
        if let Some(mut old) = live.take_if(|l| l.generation == generation) {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), old.connection.close()).await;
            });
        }
        Err(error)
    }

    /// Receives up to `n` messages of a dead-letter queue on a short-lived link, runs `f` on
    /// them, then closes the link (which gives back whatever `f` did not settle).
    async fn with_dead_letters<T>(
        &self,
        topic: &str,
        group: &str,
        n: u32,
        f: impl for<'a> FnOnce(
            &'a Receiver,
            Vec<AmqpDelivery<Body<Value>>>,
        )
            -> std::pin::Pin<Box<dyn Future<Output = PortResult<T>> + Send + 'a>>,
    ) -> PortResult<T> {
        let address = frames::dead_letter_queue(topic, group);
        let mut receiver = self
            .with_live(|live, me| {
                let address = address.clone();
                Box::pin(async move { me.attach_receiver(live, &address).await })
            })
            .await?;
        let limit = self.config.call_timeout;
        bounded("flow", limit, receiver.set_credit(n)).await?;
        let mut got = Vec::new();
        while got.len() < n as usize {
            match tokio::time::timeout(DLQ_WAIT, receiver.recv::<Body<Value>>()).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(unavailable("receive dead letters", e)),
                Ok(Ok(d)) => got.push(d),
            }
        }
        // No more transfers on this link: what `f` gives back must not come straight back here.
        bounded("flow", limit, receiver.set_credit(0)).await?;
        let result = f(&receiver, got).await;
        let _ = tokio::time::timeout(limit, receiver.close()).await;
        result
    }
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// What a poll answers when the link fails after it handed deliveries out: the deliveries (they
/// are the consumer's now; an error would strand them in `out`, renewed until `max_hold`, and
/// the broker would not hand them out again meanwhile), else the error.
fn handed_over(out: Vec<Delivery>, error: PortError) -> PortResult<Vec<Delivery>> {
    if out.is_empty() {
        Err(error)
    } else {
        tracing::debug!(%error, "amqp link failed after a poll handed deliveries out");
        Ok(out)
    }
}

/// Sends a request on a request/response pair and waits for the answer with its id.
async fn request(
    req: &mut Requester,
    message: Message<Body<Value>>,
    id: &str,
    limit: Duration,
) -> PortResult<Message<Body<Value>>> {
    bounded("request", limit, req.sender.send(message)).await?;
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let d: AmqpDelivery<Body<Value>> = bounded("response", left, req.receiver.recv()).await?;
        let answer = d.into_message();
        let matches = answer
            .properties
            .as_ref()
            .and_then(|p| p.correlation_id.as_ref())
            .is_some_and(|c| message_id_text(c) == id);
        if matches {
            return Ok(answer);
        }
    }
}

fn status_code(m: &Message<Body<Value>>, name: &str) -> Option<i64> {
    let props = m.application_properties.as_ref()?;
    match props.0.get(name)? {
        SimpleValue::Int(n) => Some(i64::from(*n)),
        SimpleValue::Long(n) => Some(*n),
        SimpleValue::Uint(n) => Some(i64::from(*n)),
        SimpleValue::Short(n) => Some(i64::from(*n)),
        SimpleValue::Ushort(n) => Some(i64::from(*n)),
        SimpleValue::Ubyte(n) => Some(i64::from(*n)),
        SimpleValue::Byte(n) => Some(i64::from(*n)),
        SimpleValue::Ulong(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

fn app_string<B>(m: &Message<B>, name: &str) -> Option<String> {
    match m.application_properties.as_ref()?.0.get(name)? {
        SimpleValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The session a receiver's link holds: the id in its source's session filter, as the broker
/// answered the attach.
fn session_of(receiver: &Receiver) -> Option<String> {
    let filter = receiver.source().as_ref()?.filter.as_ref()?;
    match filter.get(&fe2o3_amqp::types::primitives::Symbol::from(
        frames::SESSION_FILTER,
    ))? {
        Value::Described(d) => match &d.value {
            Value::String(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn message_id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => format!("{u:?}"),
        MessageId::Binary(b) => format!("{b:?}"),
    }
}

fn delivery_of(d: &AmqpDelivery<Body<Value>>) -> Delivery {
    let m = d.message();
    Delivery {
        id: m
            .properties
            .as_ref()
            .and_then(|p| p.message_id.as_ref())
            .map(message_id_text)
            .unwrap_or_default(),
        key: app_string(m, frames::KEY_PROPERTY)
            .or_else(|| m.properties.as_ref().and_then(|p| p.group_id.clone()))
            .unwrap_or_default(),
        payload: frames::data_body(&m.body).unwrap_or_default().into(),
        deliveries: m.header.as_ref().map_or(0, |h| h.delivery_count),
    }
}

#[async_trait]
impl Bus for ServiceBusBus {
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        // On a plain broker attaching creates the subscription queue; on Azure the subscription
        // must exist (Terraform creates it) or the attach fails.
        self.inner.ensure_group(topic, group).await
    }

    async fn publish(&self, topic: &str, messages: Vec<BusMessage>) -> PortResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let sessions = self.inner.config.sessions();
        let n = messages.len() as u64;
        let wire = messages
            .iter()
            .map(|m| frames::outgoing(&m.id, &m.key, &m.payload, sessions, None))
            .collect();
        self.inner.send(topic, wire).await?;
        metrics::counter!("bus_published_total").increment(n);
        Ok(())
    }

    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>> {
        let g = self.inner.group(request.topic, request.group);
        let (consumer, max, wait) = (request.consumer, request.max, request.wait);
        self.inner.poll_group(&g, consumer, max, wait).await
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
        let g = self.inner.group(topic, group);
        self.inner.settle(&g, ids).await
    }

    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        if self.inner.config.is_azure() {
            return Err(PortError::Unavailable(
                "service bus reports message counts over its HTTPS management API and Azure \
                 Monitor (ActiveMessages), not over AMQP"
                    .into(),
            ));
        }
        let entity = frames::subscription(topic, group);
        let answer = self
            .inner
            .with_live(|live, me| {
                Box::pin(async move {
                    let node = frames::management(&entity);
                    me.ask(live, &node, "count", frames::message_count).await
                })
            })
            .await?;
        if status_code(&answer, "statusCode") != Some(200) {
            return Err(PortError::Unavailable(format!(
                "amqp message count: status {:?}",
                status_code(&answer, "statusCode")
            )));
        }
        let Some(Value::Map(counts)) = frames::value_body(&answer.body) else {
            return Err(PortError::Corrupt("amqp message count: no map".into()));
        };
        match counts.get(&Value::String("active".into())) {
            Some(Value::Long(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
            Some(Value::Ulong(n)) => Ok(*n),
            Some(Value::Uint(n)) => Ok(u64::from(*n)),
            other => Err(PortError::Corrupt(format!("amqp message count: {other:?}"))),
        }
    }

    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>> {
        let (topic, group, limit) = (request.topic, request.group, request.limit);
        let n = u32::try_from(limit).unwrap_or(u32::MAX);
        let call = self.inner.config.call_timeout;
        self.inner
            .with_dead_letters(topic, group, n, |receiver, got| {
                Box::pin(async move {
                    let out: Vec<Delivery> = got.iter().map(delivery_of).collect();
                    // Peek: give them all back.
                    let infos: Vec<DeliveryInfo> = got.iter().map(DeliveryInfo::from).collect();
                    if !infos.is_empty() {
                        bounded("release", call, receiver.release_all(infos)).await?;
                    }
                    Ok(out)
                })
            })
            .await
    }

    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        let sessions = self.inner.config.sessions();
        let call = self.inner.config.call_timeout;
        drain_in_chunks(u64::from(REPLAY_CHUNK), || async {
            let inner = self.inner.clone();
            let (topic_s, group_s) = (topic.to_owned(), group.to_owned());
            self.inner
                .with_dead_letters(topic, group, REPLAY_CHUNK, move |receiver, got| {
                    Box::pin(async move {
                        if got.is_empty() {
                            return Ok(0);
                        }
                        // A fresh message id: duplicate detection would drop the old one.
                        let wire = got
                            .iter()
                            .map(|d| {
                                let m = delivery_of(d);
                                let id =
                                    format!("{}.replay.{}", m.id, uuid::Uuid::new_v4().simple());
                                frames::outgoing(&id, &m.key, &m.payload, sessions, Some(&group_s))
                            })
                            .collect();
                        inner.send(&topic_s, wire).await?;
                        let infos: Vec<DeliveryInfo> = got.iter().map(DeliveryInfo::from).collect();
                        let n = infos.len() as u64;
                        bounded("accept", call, receiver.accept_all(infos)).await?;
                        Ok(n)
                    })
                })
                .await
        })
        .await
    }
}

#[async_trait]
impl Health for ServiceBusBus {
    async fn healthcheck(&self) -> PortResult<()> {
        self.inner.healthcheck().await
    }
}

/// What this bus reads, for tests.
impl ServiceBusBus {
    /// The (topic, group) pairs this bus has receivers for.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, g) in lock(&self.inner.groups).keys() {
            out.entry(t.clone()).or_default().push(g.clone());
        }
        out
    }

    /// How many receiver links this bus holds for `group` of `topic`: with sessions, the
    /// sessions it holds (at most [`ServiceBusConfig::session_links`]), as the
    /// `bus_session_links` gauge reports them.
    pub fn links_held(&self, topic: &str, group: &str) -> usize {
        self.inner.links_held(topic, group)
    }
}
