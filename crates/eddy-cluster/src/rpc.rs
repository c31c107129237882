//! Authentication of the control RPC: with `cluster.rpc.token` set, every gRPC call between
//! the JobManager, TaskManagers and workers carries `authorization: Bearer <token>`, and
//! servers refuse calls without it. A JobManager or TaskManager whose RPC binds beyond
//! loopback refuses to start without a token: its RPC starts processes.

use eddy_core::{Configuration, EddyError, Result};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::options;
use crate::proto::job_manager_service_client::JobManagerServiceClient;
use crate::proto::task_executor_service_client::TaskExecutorServiceClient;

/// Adds the token to outgoing calls.
#[derive(Clone)]
pub struct AddToken(Option<MetadataValue<Ascii>>);

impl AddToken {
    pub fn new(token: Option<&str>) -> Result<AddToken> {
        token
            .map(|t| {
                format!("Bearer {t}").parse().map_err(|_| EddyError::Config {
                    key: options::RPC_TOKEN.key.into(),
                    value: "(hidden)".into(),
                    reason: "a token must be printable ASCII".into(),
                })
            })
            .transpose()
            .map(AddToken)
    }
}

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Checks the token of incoming calls.
#[derive(Clone)]
pub struct CheckToken(Option<String>);

impl CheckToken {
    pub fn new(token: Option<&str>) -> CheckToken {
        CheckToken(token.map(|t| format!("Bearer {t}")))
    }
}

impl Interceptor for CheckToken {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        let Some(expected) = &self.0 else { return Ok(request) };
        let given = request.metadata().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
        if crate::rest::constant_time_eq(given, expected.as_bytes()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("this call needs the cluster's RPC token (cluster.rpc.token)"))
        }
    }
}

/// The largest message the JobManager's RPC sends or takes: a checkpoint acknowledgement
/// carries a task's state, and a restored worker's deployment the state of its subtasks.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

pub type JobManagerClient = JobManagerServiceClient<InterceptedService<Channel, AddToken>>;
pub type TaskExecutorClient = TaskExecutorServiceClient<InterceptedService<Channel, AddToken>>;

/// The configured RPC token, if any.
pub fn token(config: &Configuration) -> Result<Option<String>> {
    Ok(config.get_optional(&options::RPC_TOKEN)?.filter(|t| !t.trim().is_empty()))
}

/// Refuses an RPC server reachable from other machines without a token.
pub fn check_exposure(host: &str, token: &Option<String>, what: &str) -> Result<()> {
    if token.is_none() && !crate::jobmanager::is_loopback(host) {
        return Err(EddyError::Config {
            key: options::RPC_TOKEN.key.into(),
            value: String::new(),
            reason: format!(
                "the {what} binds its RPC to {host}, reachable from other machines, and its RPC starts \
                 processes: set cluster.rpc.token (the same on every JobManager and TaskManager)"
            ),
        });
    }
    Ok(())
}

/// Serves `routes` on `listener` until `stop` turns true, on a task of its own.
pub fn spawn_server(
    routes: tonic::service::Routes,
    listener: tokio::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let result = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the {what}'s RPC server ended");
        }
    })
}

/// A client of a TaskManager's RPC at `endpoint` (`http://host:port`), connecting lazily.
pub fn taskexecutor_client(endpoint: &str, token: Option<&str>) -> Result<TaskExecutorClient> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| EddyError::user(format!("bad TaskManager address {endpoint}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    Ok(TaskExecutorServiceClient::with_interceptor(channel, AddToken::new(token)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// A client of a JobManager's RPC at `endpoint` (`http://host:port`), connecting lazily.
pub fn jobmanager_client(endpoint: &str, token: Option<&str>) -> Result<JobManagerClient> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| EddyError::user(format!("bad JobManager address {endpoint}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    Ok(JobManagerServiceClient::with_interceptor(channel, AddToken::new(token)?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
