//! Passwords: argon2id hashes in PHC strings (the `argon2` crate's defaults: 19 MiB, 2 passes,
//! one lane, as OWASP recommends), computed off the async threads, a bounded number at once.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use liveops_core::Turns;
use liveops_http::Problem;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_LEN: usize = 256;

/// Why a password cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("a password must be {MIN_LEN} to {MAX_LEN} characters")]
    Length,
    /// No turn at hashing came in time.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Hashing failed (it does not, with these parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// No turn at argon2 came within [`Hashing`]'s wait: passwords are being checked at its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many passwords are being checked; retry shortly")]
pub struct Busy;

/// How long a client refused for [`Busy`] is told to wait (`Retry-After`), besides the
/// [`HASH_WAIT`] it waited already.
pub const BUSY_RETRY_AFTER_S: u64 = 2;

impl From<Busy> for Problem {
    fn from(busy: Busy) -> Self {
        let mut p = Problem::unavailable(busy.to_string());
        p.retry_after = Some(BUSY_RETRY_AFTER_S);
        p
    }
}

/// Checks a new password's length.
pub fn check(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if (MIN_LEN..=MAX_LEN).contains(&n) {
        Ok(())
    } else {
        Err(PasswordError::Length)
    }
}

/// How long a hash or check waits for a turn before it is refused ([`Busy`]).
pub const HASH_WAIT: Duration = Duration::from_secs(3);

/// The argon2 computations of a process: each holds 19 MiB on a blocking thread for tens of
/// milliseconds, so a flood of logins (unknown emails too, which check the decoy) would start
/// as many threads and as much memory as it sends requests. A bounded number run at once; the
/// others wait their turn, at most a given time.
#[derive(Debug)]
pub struct Hashing {
    turns: Turns,
}

impl Hashing {
    /// Room for `turns` computations at once, a caller waiting at most `wait` for one (with
    /// none, every caller is refused after `wait`, as when all are taken).
    pub fn new(turns: usize, wait: Duration) -> Self {
        Self {
            turns: Turns::new(turns, wait),
        }
    }

    /// The bound every caller in this process shares: two turns per core available (at least
    /// two; at 2 cores, 4 × 19 MiB), waiting up to [`HASH_WAIT`].
    pub fn shared() -> Arc<Hashing> {
        static SHARED: LazyLock<Arc<Hashing>> = LazyLock::new(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            Arc::new(Hashing::new(cores.saturating_mul(2).max(2), HASH_WAIT))
        });
        SHARED.clone()
    }

    /// How many turns are taken now.
    pub fn running(&self) -> usize {
        self.turns.taken()
    }

    /// Runs `work` on the blocking pool in a turn; [`Busy`] if none came within the wait. The
    /// turn is held until `work` ends, even if the caller stops waiting for it.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, Busy> {
        let waiting = Waiting::new();
        let turn = self.turns.take().await;
        drop(waiting);
        let Some(turn) = turn else {
            metrics::counter!("password_hashing_refused_total").increment(1);
            return Err(Busy);
        };
        let done = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work()
        });
        Ok(done.await.ok())
    }

    /// The argon2id PHC string of `password`, with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        check(&password)?;
        let hashed = self
            .run(move || {
                let salt = SaltString::generate(&mut OsRng);
                Argon2::default()
                    .hash_password(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .map_err(|e| PasswordError::Hash(e.to_string()))
            })
            .await?;
        hashed.unwrap_or_else(|| Err(PasswordError::Hash("the hashing task failed".into())))
    }

    /// Whether `password` matches `phc` (or the decoy, when `phc` is `None`: always false).
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DECOY.to_owned());
        let matches = self
            .run(move || {
                let Ok(parsed) = PasswordHash::new(&phc) else {
                    return false;
                };
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .await?;
        Ok(matches.unwrap_or(false) && known)
    }
}

/// A caller waiting for a turn, counted in `password_hashing_waiting` until dropped (also by a
/// request given up meanwhile).
struct Waiting(metrics::Gauge);

impl Waiting {
    fn new() -> Self {
        let gauge = metrics::gauge!("password_hashing_waiting");
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A hash of no password anyone has, checked when the email is unknown so that a login takes as
/// long whether the account exists or not.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtdXNlci1zYWx0$\
                     ZmFrZS1oYXNoLWZvci11bmtub3duLWVtYWlscy0wMDAwMDA";

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hashing = Hashing::new(2, HASH_WAIT);
        let h = hashing.hash("correct horse battery".into()).await;
        let h = h.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        let verify =
            |password: &str, phc: Option<&String>| hashing.verify(password.into(), phc.cloned());
        assert_eq!(verify("correct horse battery", Some(&h)).await, Ok(true));
        assert_eq!(verify("wrong horse battery", Some(&h)).await, Ok(false));
        assert_eq!(verify("anything at all", None).await, Ok(false));
        assert_eq!(
            hashing.hash("short".into()).await,
            Err(PasswordError::Length)
        );
    }

    /// However many ask at once, at most the turns run; the others wait for one.
    #[tokio::test]
    async fn at_most_its_turns_run_at_once() {
        let hashing = Arc::new(Hashing::new(3, Duration::from_secs(30)));
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (hashing, now, peak) = (hashing.clone(), now.clone(), peak.clone());
                tokio::spawn(async move {
                    hashing
                        .run(move || {
                            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(running, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            now.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("task"), Ok(Some(())), "each ran, in turn");
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=3).contains(&peak), "{peak} ran at once");
        assert_eq!(hashing.running(), 0);
    }

    /// With every turn taken, a check waits the wait and is refused (`Busy`); a turn given back
    /// is the next one's, and a turn is held until its work ends, whoever stopped waiting.
    #[tokio::test]
    async fn past_the_wait_a_check_is_refused() {
        let hashing = Arc::new(Hashing::new(2, Duration::from_millis(100)));
        let mut held = Vec::new();
        for _ in 0..2 {
            let (release, hold) = std::sync::mpsc::channel::<()>();
            let hashing = hashing.clone();
            let task = tokio::spawn(async move { hashing.run(move || hold.recv()).await });
            held.push((release, task));
        }
        while hashing.running() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let refused = hashing.verify("anything at all".into(), None).await;
        assert_eq!(refused, Err(Busy));
        let refused = hashing.hash("correct horse battery".into()).await;
        assert_eq!(refused, Err(PasswordError::Busy(Busy)));
        // A caller that gave up does not take its turn back early: its work still holds it.
        let (release, task) = held.pop().expect("held");
        task.abort();
        assert_eq!(hashing.running(), 2);
        release.send(()).expect("release");
        while hashing.running() == 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let checked = hashing.verify("anything at all".into(), None).await;
        assert_eq!(checked, Ok(false), "the freed turn");
        let (release, task) = held.pop().expect("held");
        release.send(()).expect("release");
        assert!(task.await.expect("task").is_ok());
        assert_eq!(hashing.running(), 0);
    }
}
