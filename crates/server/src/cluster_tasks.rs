//! Work that runs once per connected cluster (the log puller now, controllers next),
//! started and stopped from the registry's [`ClusterEvent`]s rather than by whoever
//! accepted the tunnel.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::registry::{ClusterEvent, Connection, Registry};

/// Runs `start(connection, stop)` for every tunnel the registry reports connected, and
/// cancels `stop` when that tunnel is disconnected, replaced or its cluster removed (the
/// token is also a child of the tunnel's own `closed` token). Returns once `shutdown` is
/// cancelled and every started task has finished.
pub async fn per_cluster<F, Fut>(
    registry: Arc<Registry>,
    what: &'static str,
    shutdown: CancellationToken,
    start: F,
) where
    F: Fn(Connection, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut events = registry.subscribe();
    let mut running: HashMap<String, (u64, CancellationToken)> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        // Reap finished tasks so a long-lived hub does not accumulate them.
        while tasks.try_join_next().is_some() {}
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        match ev {
            ClusterEvent::Connected(c) => {
                if let Some((_, old)) = running.remove(&c.name) {
                    old.cancel();
                }
                let stop = c.closed.child_token();
                running.insert(c.name.clone(), (c.tunnel_id, stop.clone()));
                let span = tracing::info_span!("cluster_task", task = what, cluster = c.name);
                tasks.spawn(start(c, stop).instrument(span));
            }
            ClusterEvent::Disconnected { name, tunnel_id } => {
                if running.get(&name).is_some_and(|(id, _)| *id == tunnel_id)
                    && let Some((_, stop)) = running.remove(&name)
                {
                    stop.cancel();
                }
            }
            ClusterEvent::Removed { name } => {
                if let Some((_, stop)) = running.remove(&name) {
                    stop.cancel();
                }
            }
        }
    }
    for (_, (_, stop)) in running {
        stop.cancel();
    }
    while tasks.join_next().await.is_some() {}
}

/// Pulls logs from every connected cluster (see [`crate::logs::puller`]).
pub async fn log_pullers(
    registry: Arc<Registry>,
    logs: Arc<crate::logs::LogService>,
    audit: Arc<crate::audit_trail::AuditTrail>,
    shutdown: CancellationToken,
) {
    let r = registry.clone();
    per_cluster(registry, "logs", shutdown, move |c, stop| {
        crate::logs::puller::run(
            logs.clone(),
            r.clone(),
            audit.clone(),
            c.name,
            c.sender,
            stop,
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::tests::{registry, sender, tunnel};

    #[tokio::test]
    async fn per_cluster_tasks_start_on_connect_and_stop_on_disconnect_or_removal() {
        use tokio::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), &["a", "b"]);
        let s = sender().await;
        let a1 = r.attach("a", "fp-a", tunnel(&s)).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(per_cluster(
            r.clone(),
            "test",
            shutdown.clone(),
            move |c, stop| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(format!("start {} {}", c.name, c.tunnel_id));
                    stop.cancelled().await;
                    let _ = tx.send(format!("stop {} {}", c.name, c.tunnel_id));
                }
            },
        ));
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a task event within 5s")
                .unwrap()
        };
        assert_eq!(next().await, format!("start a {a1}"), "already connected");
        let b1 = r.attach("b", "fp-b", tunnel(&s)).await.unwrap();
        assert_eq!(next().await, format!("start b {b1}"));
        r.detach("a", a1, "test");
        assert_eq!(next().await, format!("stop a {a1}"));
        let a2 = r.attach("a", "fp-a", tunnel(&s)).await.unwrap();
        assert_eq!(next().await, format!("start a {a2}"));
        r.remove("b").unwrap();
        assert_eq!(next().await, format!("stop b {b1}"));
        shutdown.cancel();
        assert_eq!(
            next().await,
            format!("stop a {a2}"),
            "shutdown stops every task"
        );
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("the supervisor returns once its tasks are done")
            .unwrap();
    }
}
