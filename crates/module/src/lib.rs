//! What a service is to the binary: a [`Module`] with a name, a default port, its settings, its
//! routes and OpenAPI, its consumer groups, background tasks and readiness. The binary keeps one
//! table of modules (Grafana Loki's module manager in small); `--target` picks rows of it. A module
//! is built from a [`Context`]: the parsed settings and the [`Ports`] registry, from which it takes
//! only the ports it uses.

pub mod consume;
pub mod hold;
pub mod keys;
pub mod ports;
pub mod tick;
pub mod trace;

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use futures_util::future::BoxFuture;
use liveops_core::stores::{ActiveKeys, Sessions};
use liveops_core::{Calendar, KeyStore, LevelCurve, PortError, Window};
use liveops_http::{OperatorAuth, SignatureCheck};
use tokio_util::sync::CancellationToken;

pub use ports::{Adapter, Ports};

/// A setting that is missing or wrong: one line naming the variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A problem with `var`.
    pub fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }

    /// `value` of `var` if it lies within `range`, else "must be between" its bounds.
    pub fn within<T>(var: &'static str, value: T, range: RangeInclusive<T>) -> Result<T, Self>
    where
        T: PartialOrd + std::fmt::Display,
    {
        if range.contains(&value) {
            Ok(value)
        } else {
            let (low, high) = range.into_inner();
            Err(Self::new(var, format!("must be between {low} and {high}")))
        }
    }

    /// `value` of `var` if it is at least `min`, else "must be at least" `min`.
    pub fn at_least<T>(var: &'static str, value: T, min: T) -> Result<T, Self>
    where
        T: PartialOrd + std::fmt::Display,
    {
        if value >= min {
            Ok(value)
        } else {
            Err(Self::new(var, format!("must be at least {min}")))
        }
    }
}

/// Why a module could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A backend could not be opened.
    #[error("{0}")]
    Port(#[from] PortError),
    /// No adapter of this process serves a port the module needs (a wiring bug).
    #[error("no adapter serves {0}")]
    Missing(&'static str),
}

/// Reads a module's typed settings out of the parsed command line.
pub fn settings<A: clap::FromArgMatches>(args: &clap::ArgMatches) -> Result<A, ConfigError> {
    A::from_arg_matches(args).map_err(|e| ConfigError::new("arguments", e.to_string()))
}

/// A consumer group a module reads a topic with. Every process creates every group of the table
/// at start, so no event published before a consumer first runs is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// The topic read.
    pub topic: &'static str,
    /// The group's name.
    pub group: &'static str,
}

impl Group {
    /// The group `group` reading `topic`.
    pub const fn new(topic: &'static str, group: &'static str) -> Self {
        Self { topic, group }
    }
}

type TaskFn =
    Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, Result<(), PortError>> + Send>;

/// Background work (a consumer, a scheduler, an adapter's upkeep) the supervisor runs until its
/// stop token is cancelled; a task that ends on its own before that stops the process.
pub struct Task {
    /// What it is, for the logs (`leaderboard consumer`).
    pub name: &'static str,
    run: TaskFn,
}

impl Task {
    /// A task running `work(stop)`.
    pub fn new<F, Fut>(name: &'static str, work: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), PortError>> + Send + 'static,
    {
        Self {
            name,
            run: Box::new(move |stop| Box::pin(work(stop))),
        }
    }

    /// A task running `work(state, stop)`: a consumer or scheduler over its module's state.
    pub fn over<S, F, Fut>(name: &'static str, state: S, work: F) -> Self
    where
        S: Send + 'static,
        F: FnOnce(S, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), PortError>> + Send + 'static,
    {
        Self::new(name, move |stop| work(state, stop))
    }

    /// Starts the work; it should return soon after `stop` is cancelled.
    pub fn start(self, stop: CancellationToken) -> BoxFuture<'static, Result<(), PortError>> {
        (self.run)(stop)
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("name", &self.name).finish()
    }
}

/// Why a module is not ready yet (`None`: ready), asked on every `/readyz`.
pub type Readiness = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// A built module: what the process serves and runs for it.
pub struct Service {
    /// Its routes (the binary adds the metrics layer labelled with the module's name).
    pub router: Router,
    /// Its consumers and schedulers.
    pub tasks: Vec<Task>,
    /// Its own readiness, beyond the reachability of the ports it uses.
    pub readiness: Option<Readiness>,
}

impl Service {
    /// Routes only: no tasks, always ready.
    pub fn routes(router: Router) -> Self {
        Self {
            router,
            tasks: Vec::new(),
            readiness: None,
        }
    }

    /// The same service, running `task` too.
    #[must_use]
    pub fn with_task(mut self, task: Task) -> Self {
        self.tasks.push(task);
        self
    }
}

/// Settings more than one module reads (the windows also shape their OpenAPI documents), as
/// flags and environment variables (the binary flattens them into its shared settings).
#[derive(clap::Args, Clone, Debug)]
pub struct SharedArgs {
    /// Leaderboard windows, comma separated: the leaderboard ranks them (the first is its routes'
    /// default) and rank campaigns may pay only on them.
    #[arg(long, env = "LB_WINDOWS", default_value = "daily,weekly,seasonal")]
    pub lb_windows: String,
    /// Seconds a ranking waits after its end for events received before it and still on their
    /// way: a period's final snapshot is taken, and a rank campaign decided, no sooner.
    #[arg(long, env = "LB_SETTLE_SEC", default_value_t = 60)]
    pub lb_settle_sec: u64,
}

impl SharedArgs {
    /// `LB_SETTLE_SEC`, checked: at most an hour.
    pub fn settle(&self) -> Result<std::time::Duration, ConfigError> {
        let s = ConfigError::within("LB_SETTLE_SEC", self.lb_settle_sec, 0..=3600)?;
        Ok(std::time::Duration::from_secs(s))
    }

    /// The windows of `LB_WINDOWS`, checked: known names, each once (a window listed twice
    /// would count every score on it twice), at least one.
    pub fn windows(&self) -> Result<Vec<Window>, ConfigError> {
        let windows: Vec<Window> = self
            .lb_windows
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|w| {
                Window::parse(w).ok_or_else(|| {
                    ConfigError::new(
                        "LB_WINDOWS",
                        format!("unknown window {w:?}: use daily, weekly, seasonal"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if windows.is_empty() {
            return Err(ConfigError::new(
                "LB_WINDOWS",
                "at least one window is required",
            ));
        }
        let twice = (1..windows.len()).find(|&i| windows[..i].contains(&windows[i]));
        if let Some(w) = twice.map(|i| windows[i]) {
            return Err(ConfigError::new(
                "LB_WINDOWS",
                format!("window {w} is listed twice"),
            ));
        }
        Ok(windows)
    }
}

/// Settings every module may use, resolved once by the binary.
#[derive(Clone, Debug)]
pub struct Shared {
    /// Keys that sign requests and receipts, as they are now (layers change at run time).
    pub keys: Arc<KeyStore>,
    /// How far `X-Timestamp` may be from server time, in seconds.
    pub signature_tolerance_s: i64,
    /// Whether first-scheme signatures still pass (`SIG_ACCEPT_V1`).
    pub signature_accept_v1: bool,
    /// Seasons and periods.
    pub calendar: Calendar,
    /// XP needed per level (`LEVEL_CURVE`): progression levels players, participation checks
    /// campaigns' minimum levels.
    pub level_curve: LevelCurve,
    /// Leaderboard windows ranked (`LB_WINDOWS`), the first the default: the leaderboard ranks
    /// them, campaigns pay rank rewards only on them.
    pub windows: Vec<Window>,
    /// How long a ranking waits after its end for events still on their way (`LB_SETTLE_SEC`):
    /// final snapshots and rank campaigns.
    pub settle: std::time::Duration,
    /// This replica's name in its consumer groups (host and pid).
    pub consumer_name: String,
    /// Most events a consumer takes per poll.
    pub batch_size: usize,
    /// How long consumers remember an applied event's id (`EVENT_RETENTION`): an event resent
    /// later would be applied again, so the gateway takes none that old.
    pub event_retention: std::time::Duration,
    /// Which bus carries the events, as `BUS_KIND` names it: metrics' `bus` label.
    pub bus: &'static str,
}

/// What a module is built from.
pub struct Context {
    /// The parsed command line and environment; each module reads its own settings from it.
    pub args: clap::ArgMatches,
    /// Settings shared by every module.
    pub shared: Shared,
    /// The adapters this process may open, by port.
    pub ports: Arc<Ports>,
    key_sync: AtomicBool,
    /// Set once the API keys were read (by the first call or the sync task).
    keys_read: Arc<AtomicBool>,
    tasks: Mutex<Vec<Task>>,
}

impl Context {
    /// A context over the parsed arguments, the shared settings and the ports.
    pub fn new(args: clap::ArgMatches, shared: Shared, ports: Arc<Ports>) -> Self {
        Self {
            args,
            shared,
            ports,
            key_sync: AtomicBool::new(false),
            keys_read: Arc::new(AtomicBool::new(false)),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The keys that check request signatures, for a module with signed routes. Where the
    /// ports serve [`ActiveKeys`], the first call loads the active API keys and starts the task
    /// that keeps them current in this process ([`keys::sync`]); later calls share it.
    pub async fn signing_keys(&self) -> Arc<KeyStore> {
        let keys = self.shared.keys.clone();
        if self.ports.serves::<dyn ActiveKeys>() && !self.key_sync.swap(true, Ordering::SeqCst) {
            match self.ports.get::<dyn ActiveKeys>().await {
                Ok(store) => match keys::refresh(store.as_ref(), &keys).await {
                    Ok(n) => {
                        self.keys_read.store(true, Ordering::SeqCst);
                        tracing::info!(api_keys = n, "API keys loaded");
                    }
                    Err(error) => tracing::warn!(%error, "cannot read the API keys yet"),
                },
                Err(error) => tracing::warn!(%error, "cannot open the API key store yet"),
            }
            let read = self.keys_read.clone();
            let task = keys::sync(self.ports.clone(), keys.clone(), read);
            match self.tasks.lock() {
                Ok(mut tasks) => tasks.push(task),
                Err(poisoned) => poisoned.into_inner().push(task),
            }
        }
        keys
    }

    /// How a module with signed routes checks signatures: [`Context::signing_keys`], the
    /// shared clock tolerance and whether first-scheme signatures pass.
    pub async fn signature_check(&self) -> SignatureCheck {
        SignatureCheck {
            keys: self.signing_keys().await,
            tolerance_s: self.shared.signature_tolerance_s,
            accept_v1: self.shared.signature_accept_v1,
        }
    }

    /// How a module with operator routes checks bearer tokens: over the ports' sessions.
    pub async fn operator_auth(&self) -> Result<OperatorAuth, BuildError> {
        Ok(OperatorAuth {
            sessions: self.ports.get::<dyn Sessions>().await?,
        })
    }

    /// The part `T` of a module's state this context supplies ([`FromContext`]).
    pub async fn part<T: FromContext>(&self) -> Result<T, BuildError> {
        T::from_context(self).await
    }

    /// Tasks the context started for the modules it built (the API key sync), handed out once.
    /// Not ready while signatures are checked in this process and its API keys were never read
    /// (started while the database was away): it would refuse every API key's request with 401.
    pub fn readiness(&self) -> Option<Readiness> {
        if !self.key_sync.load(Ordering::SeqCst) {
            return None;
        }
        let read = self.keys_read.clone();
        Some(Arc::new(move || {
            (!read.load(Ordering::SeqCst)).then(|| "API keys not read yet".to_owned())
        }))
    }

    /// The tasks the context started for the modules (the API key sync), handed out once.
    pub fn take_tasks(&self) -> Vec<Task> {
        match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

/// A part of a module's state the [`Context`] supplies: a port (`Arc<dyn Trait>`), the
/// signature check or the operator auth. [`from_context!`] fills a state's fields with them.
#[async_trait]
pub trait FromContext: Sized {
    /// Takes it from `ctx`, opening the adapter behind it on first use.
    async fn from_context(ctx: &Context) -> Result<Self, BuildError>;
}

#[async_trait]
impl<P: ?Sized + Send + Sync + 'static> FromContext for Arc<P> {
    async fn from_context(ctx: &Context) -> Result<Self, BuildError> {
        ctx.ports.get::<P>().await
    }
}

#[async_trait]
impl FromContext for SignatureCheck {
    async fn from_context(ctx: &Context) -> Result<Self, BuildError> {
        Ok(ctx.signature_check().await)
    }
}

#[async_trait]
impl FromContext for OperatorAuth {
    async fn from_context(ctx: &Context) -> Result<Self, BuildError> {
        ctx.operator_auth().await
    }
}

/// Gives a module's state struct an `async fn from_context(ctx, args…)`: the fields named in
/// parentheses from its arguments, every field named in braces from the context
/// ([`FromContext`]), taken in the order written.
///
/// `from_context!(GatewayState(config: Arc<GatewayConfig>) { signatures, bus, idem });`
#[macro_export]
macro_rules! from_context {
    ($state:ident($($arg:ident: $ty:ty),* $(,)?) { $($field:ident),+ $(,)? }) => {
        impl $state {
            /// The state of the given fields, every other one taken from `ctx`.
            pub async fn from_context(
                ctx: &$crate::Context,
                $($arg: $ty),*
            ) -> Result<Self, $crate::BuildError> {
                Ok(Self {
                    $($arg,)*
                    $($field: ctx.part().await?,)+
                })
            }
        }
    };
}

/// A module's settings (a clap `Args`) as a [`Definition::new`] row uses them: they check
/// themselves, shape the module's OpenAPI document and build the module.
pub trait ModuleArgs: clap::Args + clap::FromArgMatches + Send + Sync + 'static {
    /// Checks the values, so a bad one stops start-up whatever the target; none by default.
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The module's OpenAPI document `doc` as these settings and the `shared` ones shape it
    /// (bounds and choices); `doc` as it is by default.
    fn openapi(
        &self,
        doc: utoipa::openapi::OpenApi,
        _shared: &SharedArgs,
    ) -> utoipa::openapi::OpenApi {
        doc
    }

    /// Builds the module's service over the ports it needs.
    fn build(self, ctx: &Context) -> impl Future<Output = Result<Service, BuildError>> + Send;
}

/// One service of LiveOps, as the binary's module table sees it.
#[async_trait]
pub trait Module: Send + Sync {
    /// Its name: the `--target` value and the `service` label of its metrics.
    fn name(&self) -> &'static str;
    /// The port it listens on when it runs alone.
    fn port(&self) -> u16;
    /// Adds its settings (flags with their environment variables) to a command.
    fn args(&self, cmd: clap::Command) -> clap::Command {
        cmd
    }
    /// Checks its settings, so a bad value stops start-up whatever the target.
    fn check(&self, _args: &clap::ArgMatches) -> Result<(), ConfigError> {
        Ok(())
    }
    /// The consumer groups it reads with.
    fn groups(&self) -> &'static [Group] {
        &[]
    }
    /// The OpenAPI description of its routes, for the settings in `args` (bounds and choices
    /// may depend on them).
    fn openapi(&self, args: &clap::ArgMatches) -> utoipa::openapi::OpenApi;
    /// Builds its routes, tasks and readiness over the ports it needs.
    async fn build(&self, ctx: &Context) -> Result<Service, BuildError>;
}

/// Builds a module's service from the context and its parsed settings.
pub type BuildFn<A> =
    for<'a> fn(&'a Context, A) -> futures_util::future::BoxFuture<'a, Result<Service, BuildError>>;

/// A [`Module`] described by values: what most services are. `A` is the module's settings (a
/// clap `Args`); `check` validates them at start, `build` makes the service.
pub struct Definition<A> {
    /// The module's name (`--target` value, `service` metric label).
    pub name: &'static str,
    /// Its default port.
    pub port: u16,
    /// Its consumer groups.
    pub groups: &'static [Group],
    /// The OpenAPI document of its routes (with settings at no effect).
    pub doc: fn() -> utoipa::openapi::OpenApi,
    /// Shapes that document for its settings and the shared ones (bounds and choices that
    /// depend on them).
    pub openapi: fn(&A, utoipa::openapi::OpenApi, &SharedArgs) -> utoipa::openapi::OpenApi,
    /// Checks its settings.
    pub check: fn(&A) -> Result<(), ConfigError>,
    /// Builds it.
    pub build: BuildFn<A>,
}

impl<A: ModuleArgs> Definition<A> {
    /// The row of module `name` on `port` reading `groups`, documented by `doc`, whose settings
    /// check themselves and build it ([`ModuleArgs`]).
    pub const fn new(
        name: &'static str,
        port: u16,
        groups: &'static [Group],
        doc: fn() -> utoipa::openapi::OpenApi,
    ) -> Self {
        Self {
            name,
            port,
            groups,
            doc,
            openapi: A::openapi,
            check: A::check,
            build: |ctx, args| Box::pin(args.build(ctx)),
        }
    }
}

impl<A> Definition<A>
where
    A: clap::Args + clap::FromArgMatches,
{
    /// Its OpenAPI document with every setting at its default (and the environment's).
    pub fn default_openapi(&self) -> Result<utoipa::openapi::OpenApi, ConfigError> {
        let cmd = A::augment_args(clap::Command::new(self.name));
        let cmd = <SharedArgs as clap::Args>::augment_args(cmd);
        let matches = cmd
            .try_get_matches_from([self.name])
            .map_err(|e| ConfigError::new("arguments", e.to_string()))?;
        let shared = settings::<SharedArgs>(&matches)?;
        Ok((self.openapi)(
            &settings::<A>(&matches)?,
            (self.doc)(),
            &shared,
        ))
    }
}

#[async_trait]
impl<A> Module for Definition<A>
where
    A: clap::Args + clap::FromArgMatches + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn args(&self, cmd: clap::Command) -> clap::Command {
        A::augment_args(cmd)
    }

    fn check(&self, args: &clap::ArgMatches) -> Result<(), ConfigError> {
        (self.check)(&settings::<A>(args)?)
    }

    fn groups(&self) -> &'static [Group] {
        self.groups
    }

    fn openapi(&self, args: &clap::ArgMatches) -> utoipa::openapi::OpenApi {
        match (settings::<A>(args), settings::<SharedArgs>(args)) {
            (Ok(a), Ok(shared)) => (self.openapi)(&a, (self.doc)(), &shared),
            // Settings are checked at start; a process never gets here with bad ones.
            _ => utoipa::openapi::OpenApi::default(),
        }
    }

    async fn build(&self, ctx: &Context) -> Result<Service, BuildError> {
        (self.build)(ctx, settings::<A>(&ctx.args)?).await
    }
}

/// The settings of a module that has none.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct NoSettings;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks_pass_the_value_or_name_the_variable_and_the_bound() {
        assert_eq!(ConfigError::at_least("N", 1u32, 1), Ok(1));
        let low = ConfigError::at_least("N", 0u64, 1).unwrap_err();
        assert_eq!(low.to_string(), "N: must be at least 1");
        assert_eq!(ConfigError::within("T", 5, 1..=10), Ok(5));
        let high = ConfigError::within("T", 11, 1..=10).unwrap_err();
        assert_eq!(high.to_string(), "T: must be between 1 and 10");
    }
}
