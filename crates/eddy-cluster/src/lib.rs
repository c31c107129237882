//! Eddy's cluster runtime: a JobManager that accepts jobs and schedules them into the slots of
//! TaskManagers, TaskManagers that start the job's binary as worker processes, the control RPC
//! between them (gRPC), the REST API, and the client side of `execute` (submission and worker
//! mode). See docs/design/cluster.md.

pub mod artifacts;
pub mod checkpoints;
pub mod client;
pub mod jobmanager;
pub mod options;
pub mod process_metrics;
pub mod prometheus;
pub mod rest;
mod rest_checkpoints;
pub mod rest_metrics;
mod rest_run;
mod rest_savepoints;
pub mod rpc;
pub mod savepoints;
pub mod taskmanager;
pub mod web;
pub mod worker;

/// The generated gRPC messages and services (proto/cluster.proto).
pub mod proto {
    tonic::include_proto!("eddy.cluster.v1");
}

use eddy_core::{EddyError, Result};

/// A multi-threaded tokio runtime for a cluster process.
pub fn runtime(name: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("eddy-{name}"))
        .build()
        .map_err(|e| EddyError::user(format!("cannot start the {name}'s async runtime: {e}")))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
