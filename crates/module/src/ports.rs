//! The registry of adapters a process may use, by the port trait each serves. The binary fills it
//! from the configuration (which adapter backs which port); a module takes what it needs with
//! [`Ports::get`]. An adapter is opened on first use, so a gateway-only process never connects to
//! the database, and once opened its health counts towards `/readyz` and its upkeep tasks run.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use liveops_core::{Health, PortError, PortResult};
use tokio::sync::OnceCell;

use crate::{BuildError, Task};

/// What opening an adapter gives: the adapter, and the upkeep it needs while the process runs
/// (flushing, compaction, expiry), which the supervisor stops after every module's tasks.
pub struct Opened<A: ?Sized> {
    /// The adapter.
    pub adapter: Arc<A>,
    /// Its upkeep tasks.
    pub upkeep: Vec<Task>,
}

impl<A: ?Sized> Opened<A> {
    /// An adapter with no upkeep.
    pub fn plain(adapter: Arc<A>) -> Self {
        Self {
            adapter,
            upkeep: Vec::new(),
        }
    }
}

type Opener<A> = Box<dyn Fn() -> BoxFuture<'static, PortResult<Opened<A>>> + Send + Sync>;

/// One backend, opened on first use and shared by every port it serves.
pub struct Adapter<A: ?Sized> {
    name: &'static str,
    cell: OnceCell<Arc<A>>,
    open: Opener<A>,
    health: fn(Arc<A>) -> Arc<dyn Health>,
    upkeep: Mutex<Vec<Task>>,
}

impl<A: Health + ?Sized + 'static> Adapter<A> {
    /// An adapter called `name` in `/readyz`, opened by `open`.
    pub fn new<F, Fut>(name: &'static str, open: F) -> Arc<Self>
    where
        A: Sized,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PortResult<Opened<A>>> + Send + 'static,
    {
        Self::new_dyn(name, |a| a, open)
    }

    /// Like [`Adapter::new`] for an adapter known only as a trait object (`dyn Repository`):
    /// `health` upcasts it (`|a| a`).
    pub fn new_dyn<F, Fut>(
        name: &'static str,
        health: fn(Arc<A>) -> Arc<dyn Health>,
        open: F,
    ) -> Arc<Self>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PortResult<Opened<A>>> + Send + 'static,
    {
        Arc::new(Self {
            name,
            cell: OnceCell::new(),
            open: Box::new(move || Box::pin(open())),
            health,
            upkeep: Mutex::new(Vec::new()),
        })
    }

    /// An adapter that is already open.
    pub fn ready(name: &'static str, adapter: Arc<A>) -> Arc<Self>
    where
        A: Sized,
    {
        let this = Self::new(name, || async {
            Err(PortError::Unavailable("opened at construction".into()))
        });
        let _ = this.cell.set(adapter);
        this
    }

    /// The adapter, opening it on first use.
    pub async fn get(&self) -> PortResult<Arc<A>> {
        self.cell
            .get_or_try_init(|| async {
                let opened = (self.open)().await?;
                if let Ok(mut upkeep) = self.upkeep.lock() {
                    upkeep.extend(opened.upkeep);
                }
                tracing::debug!(adapter = self.name, "adapter opened");
                Ok(opened.adapter)
            })
            .await
            .cloned()
    }
}

/// What the registry needs to know of an adapter, whatever its type.
trait Known: Send + Sync {
    fn name(&self) -> &'static str;
    fn health(&self) -> Option<Arc<dyn Health>>;
    fn take_upkeep(&self) -> Vec<Task>;
}

impl<A: Health + ?Sized + 'static> Known for Adapter<A> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn health(&self) -> Option<Arc<dyn Health>> {
        self.cell.get().map(|a| (self.health)(a.clone()))
    }

    fn take_upkeep(&self) -> Vec<Task> {
        self.upkeep
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default()
    }
}

type Provider =
    Box<dyn Fn() -> BoxFuture<'static, PortResult<Box<dyn Any + Send + Sync>>> + Send + Sync>;

/// Adapters by the port traits they serve.
#[derive(Default)]
pub struct Ports {
    providers: HashMap<TypeId, Provider>,
    adapters: Vec<Arc<dyn Known>>,
    /// The adapter behind each port.
    serving: HashMap<TypeId, Arc<dyn Known>>,
}

impl Ports {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves port `P` (written `dyn Trait`) from `adapter`; `cast` is `|a| a` in practice.
    /// A later registration of the same port replaces the earlier one.
    pub fn provide<A, P>(&mut self, adapter: &Arc<Adapter<A>>, cast: fn(Arc<A>) -> Arc<P>)
    where
        A: Health + Send + Sync + ?Sized + 'static,
        P: ?Sized + Send + Sync + 'static,
    {
        if !self
            .adapters
            .iter()
            .any(|k| std::ptr::addr_eq(Arc::as_ptr(k), Arc::as_ptr(adapter)))
        {
            self.adapters.push(adapter.clone());
        }
        self.serving
            .insert(TypeId::of::<P>(), adapter.clone() as Arc<dyn Known>);
        let adapter = adapter.clone();
        self.providers.insert(
            TypeId::of::<P>(),
            Box::new(move || {
                let adapter = adapter.clone();
                Box::pin(async move {
                    let a = adapter.get().await?;
                    Ok(Box::new(cast(a)) as Box<dyn Any + Send + Sync>)
                })
            }),
        );
    }

    /// The adapter serving port `P`, opened if it was not yet.
    pub async fn get<P: ?Sized + Send + Sync + 'static>(&self) -> Result<Arc<P>, BuildError> {
        let provider = self
            .providers
            .get(&TypeId::of::<P>())
            .ok_or(BuildError::Missing(std::any::type_name::<P>()))?;
        let any = provider().await?;
        any.downcast::<Arc<P>>()
            .map(|b| *b)
            .map_err(|_| BuildError::Missing(std::any::type_name::<P>()))
    }

    /// Whether the adapter serving port `P` was opened (by a module that took it).
    pub fn opened<P: ?Sized + 'static>(&self) -> bool {
        self.serving
            .get(&TypeId::of::<P>())
            .is_some_and(|k| k.health().is_some())
    }

    /// Whether some adapter serves port `P`.
    pub fn serves<P: ?Sized + 'static>(&self) -> bool {
        self.providers.contains_key(&TypeId::of::<P>())
    }

    /// Asks every opened adapter whether its backend answers: `(name, result)` each.
    pub async fn check(&self) -> Vec<(&'static str, PortResult<()>)> {
        let opened: Vec<(&'static str, Arc<dyn Health>)> = self
            .adapters
            .iter()
            .filter_map(|k| k.health().map(|h| (k.name(), h)))
            .collect();
        let mut out = Vec::with_capacity(opened.len());
        for (name, health) in opened {
            out.push((name, health.healthcheck().await));
        }
        out
    }

    /// What the opened adapters say of themselves while healthy but degraded (a read replica
    /// set aside), by name.
    pub fn notes(&self) -> Vec<(&'static str, String)> {
        self.adapters
            .iter()
            .filter_map(|k| Some((k.name(), k.health()?.note()?)))
            .collect()
    }

    /// The upkeep tasks of the adapters opened so far (each handed out once).
    pub fn take_upkeep(&self) -> Vec<Task> {
        self.adapters.iter().flat_map(|k| k.take_upkeep()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;

    trait Greeter: Send + Sync {
        fn hello(&self) -> &'static str;
    }
    trait Counter: Send + Sync {
        fn count(&self) -> usize;
    }

    struct Both(usize);
    impl Greeter for Both {
        fn hello(&self) -> &'static str {
            "hello"
        }
    }
    impl Counter for Both {
        fn count(&self) -> usize {
            self.0
        }
    }
    #[async_trait]
    impl Health for Both {
        async fn healthcheck(&self) -> PortResult<()> {
            Ok(())
        }
    }

    /// An adapter `name` whose open number `n` (from 0) answers `open(n)`, and how many times it
    /// was opened.
    fn counted_adapter(
        name: &'static str,
        open: impl Fn(usize) -> PortResult<Opened<Both>> + Send + Sync + 'static,
    ) -> (Arc<AtomicUsize>, Arc<Adapter<Both>>) {
        let opens = Arc::new(AtomicUsize::new(0));
        let counted = opens.clone();
        let adapter = Adapter::new(name, move || {
            let answer = open(counted.fetch_add(1, Ordering::SeqCst));
            async move { answer }
        });
        (opens, adapter)
    }

    #[tokio::test]
    async fn an_adapter_opens_once_on_first_use_and_serves_every_port_it_was_given() {
        let (opens, adapter) = counted_adapter("both", |n| {
            Ok(Opened {
                adapter: Arc::new(Both(n + 41)),
                upkeep: vec![Task::new("upkeep", |_| async { Ok(()) })],
            })
        });
        let mut ports = Ports::new();
        ports.provide::<_, dyn Greeter>(&adapter, |a| a);
        ports.provide::<_, dyn Counter>(&adapter, |a| a);
        assert!(ports.check().await.is_empty(), "nothing opened yet");
        assert!(ports.take_upkeep().is_empty());

        let g = ports.get::<dyn Greeter>().await.expect("greeter");
        let c = ports.get::<dyn Counter>().await.expect("counter");
        assert_eq!((g.hello(), c.count()), ("hello", 41));
        assert_eq!(opens.load(Ordering::SeqCst), 1);
        assert_eq!(ports.check().await.len(), 1);
        assert_eq!(ports.take_upkeep().len(), 1);
        assert!(ports.take_upkeep().is_empty(), "upkeep is handed out once");
    }

    #[tokio::test]
    async fn a_port_nobody_serves_is_named_in_the_error() {
        let ports = Ports::new();
        let err = ports.get::<dyn Greeter>().await.err().expect("missing");
        assert!(err.to_string().contains("Greeter"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_open_is_retried_on_the_next_use() {
        let (_, adapter) = counted_adapter("flaky", |n| {
            if n == 0 {
                Err(PortError::Unavailable("down".into()))
            } else {
                Ok(Opened::plain(Arc::new(Both(n))))
            }
        });
        let mut ports = Ports::new();
        ports.provide::<_, dyn Counter>(&adapter, |a| a);
        assert!(ports.get::<dyn Counter>().await.is_err());
        assert_eq!(ports.get::<dyn Counter>().await.expect("second").count(), 1);
    }
}
