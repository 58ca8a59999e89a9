//! [`Turns`]: a bounded number of turns at some costly work (hashing a password, reading a whole
//! entrant list), each caller waiting a bounded time for one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most a number of turns taken at once; a caller waits at most a given time for one.
#[derive(Debug)]
pub struct Turns {
    turns: Arc<Semaphore>,
    size: usize,
    wait: Duration,
}

impl Turns {
    /// Room for `size` turns at once, a caller waiting at most `wait` for one (with none, every
    /// caller goes without after `wait`, as when all are taken).
    pub fn new(size: usize, wait: Duration) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(size)),
            size,
            wait,
        }
    }

    /// A turn, held until dropped; `None` if none came within the wait.
    pub async fn take(&self) -> Option<OwnedSemaphorePermit> {
        let turn = tokio::time::timeout(self.wait, self.turns.clone().acquire_owned()).await;
        turn.ok()?.ok()
    }

    /// How many turns are taken now.
    pub fn taken(&self) -> usize {
        self.size - self.turns.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::Turns;
    use std::time::Duration;

    /// Past its turns a caller waits the wait and goes without; a turn given back is taken.
    #[tokio::test]
    async fn at_most_its_turns_are_taken() {
        let turns = Turns::new(2, Duration::from_millis(50));
        let first = turns.take().await;
        let second = turns.take().await;
        assert!(first.is_some() && second.is_some());
        assert_eq!(turns.taken(), 2);
        assert!(turns.take().await.is_none(), "a third at once");
        drop(first);
        assert_eq!(turns.taken(), 1);
        assert!(turns.take().await.is_some());
    }
}
