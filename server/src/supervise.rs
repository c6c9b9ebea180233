//! The server's background tasks (the monitor, the market, chat presence, the limiters'
//! sweeps) run supervised: a task that ends before shutdown, by returning or by panicking, is
//! logged and started again, so one bad sample never leaves a page dead until a restart.

use std::{future::Future, time::Duration};
use tokio_util::sync::CancellationToken;

/// The pause before a task that ended is started again.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Runs `task()` until `shutdown`, starting it again whenever it ends before.
pub fn supervise<F, Fut>(name: &'static str, shutdown: CancellationToken, task: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let ended = tokio::spawn(task()).await;
            if shutdown.is_cancelled() {
                return;
            }
            match ended {
                Err(error) if error.is_panic() => {
                    tracing::error!("the {name} task panicked; starting it again");
                }
                _ => tracing::warn!("the {name} task ended; starting it again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RESTART_AFTER) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_started_again_until_shutdown() {
        let runs = Arc::new(AtomicU32::new(0));
        let shutdown = CancellationToken::new();
        let counted = runs.clone();
        supervise("test", shutdown.clone(), move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match run {
                    0 => panic!("a bad sample"),
                    1 => {}
                    _ => std::future::pending().await,
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "panicked, returned, running"
        );
        shutdown.cancel();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
