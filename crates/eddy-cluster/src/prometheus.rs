//! The Prometheus reporter: `GET /metrics` in the Prometheus text exposition format (0.0.4),
//! served by the JobManager and by each TaskManager on a port of their own.
//!
//! Enabled by `metrics.reporter: prom` (or `prometheus`), by Flink's `metrics.reporters: prom`
//! with `metrics.reporter.prom.factory.class`, or by setting `metrics.reporter.prom.port`.
//! `metrics.reporter.prom.port` is a port, a range (`9250-9260`: the first free one, so that
//! several processes on one host can share a configuration) or 0 (any free port); default
//! 9249. `metrics.reporter.prom.host` is where it binds, default 127.0.0.1.
//!
//! Names follow Flink's reporter with `eddy_` for `flink_`: the JobManager serves
//! `eddy_jobmanager_<metric>` and `eddy_jobmanager_job_<metric>` (`job_id`, `job_name`); a
//! TaskManager serves `eddy_taskmanager_<metric>` (`tm_id`), `eddy_taskmanager_job_task_<metric>`
//! (`job_id`, `job_name`, `task_name`, `subtask_index`, `tm_id`) and
//! `eddy_taskmanager_job_task_operator_<metric>` (the same and `operator_name`), for the
//! subtasks of the worker processes it started (they report to it every half second). Every
//! metric is a gauge; characters other than `[a-zA-Z0-9_:]` in names become `_`.
//!
//! The text format is written here rather than with the `prometheus-client` crate: Eddy's
//! metrics already live in their own structures and are only rendered, never registered
//! twice, and the format is a few lines of escaping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::response::IntoResponse;
use eddy_core::{Configuration, EddyError, Result};
use tokio::sync::watch;

/// Where the reporter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromConfig {
    pub host: String,
    /// Tried in order; `[0]` means any free port.
    pub ports: Vec<u16>,
}

pub const DEFAULT_PORT: u16 = 9249;

/// The reporter's configuration, or `None` when it is not enabled.
pub fn config(config: &Configuration) -> Result<Option<PromConfig>> {
    let is_prom = |v: &str| {
        v.split([',', ';']).any(|r| matches!(r.trim().to_ascii_lowercase().as_str(), "prom" | "prometheus"))
    };
    let enabled = config.get_raw("metrics.reporter").is_some_and(is_prom)
        || config.get_raw("metrics.reporters").is_some_and(is_prom)
        || config.get_raw("metrics.reporter.prom.factory.class").is_some_and(|v| !v.trim().is_empty())
        || config.get_raw("metrics.reporter.prom.port").is_some();
    if !enabled {
        return Ok(None);
    }
    let host = config
        .get_raw("metrics.reporter.prom.host")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or("127.0.0.1")
        .to_string();
    let ports = match config.get_raw("metrics.reporter.prom.port") {
        None => vec![DEFAULT_PORT],
        Some(p) => parse_ports(p).map_err(|reason| EddyError::Config {
            key: "metrics.reporter.prom.port".into(),
            value: p.to_string(),
            reason,
        })?,
    };
    Ok(Some(PromConfig { host, ports }))
}

/// `9249`, `9250-9260` or `0`.
pub fn parse_ports(text: &str) -> std::result::Result<Vec<u16>, String> {
    let port =
        |s: &str| s.trim().parse::<u16>().map_err(|_| format!("{text:?} is not a port or a range of ports"));
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b || a == 0 {
                return Err(format!("{text:?} is not a range of ports (low-high)"));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![port(text)?]),
    }
}

/// Collects samples by metric family and writes them in the text format.
#[derive(Default)]
pub struct TextWriter {
    families: BTreeMap<String, Vec<String>>,
}

/// A metric or label name with what Prometheus does not allow replaced by `_`.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_sample(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        crate::rest_metrics::format_value(v)
    }
}

impl TextWriter {
    /// One sample of family `name` (sanitized) with `labels`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> =
            labels.iter().map(|(k, v)| format!("{}=\"{}\"", sanitize(k), escape_label(v))).collect();
        let line = if labels.is_empty() {
            format!("{} {}", sanitize(name), format_sample(value))
        } else {
            format!("{}{{{}}} {}", sanitize(name), labels.join(","), format_sample(value))
        };
        self.families.entry(sanitize(name)).or_default().push(line);
    }

    pub fn finish(self) -> String {
        let mut out = String::new();
        for (family, lines) in self.families {
            out.push_str(&format!("# TYPE {family} gauge\n"));
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }
}

/// Splits a subtask metric name into (operator, metric): `Map.numRecordsIn` → operator
/// `Map`; task metrics have none. Operator names may hold dots; metric names do not.
pub fn split_operator(name: &str) -> (Option<&str>, &str) {
    match name.rsplit_once('.') {
        Some((op, metric)) => (Some(op), metric),
        None => (None, name),
    }
}

/// What renders the page on each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds the reporter's port (the first free one of its range) and serves `GET /metrics`
/// until `shutdown`; returns the address it listens on.
pub async fn serve(
    config: &PromConfig,
    render: Render,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let mut last_error = None;
    let mut listener = None;
    for port in &config.ports {
        let address = format!("{}:{port}", config.host);
        match tokio::net::TcpListener::bind(&address).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(e) => last_error = Some((address, e)),
        }
    }
    let listener = match (listener, last_error) {
        (Some(l), _) => l,
        (None, Some((address, source))) => {
            return Err(EddyError::Network {
                action: "cannot bind the Prometheus reporter to",
                address,
                source,
            })
        }
        (None, None) => return Err(EddyError::user("metrics.reporter.prom.port names no port")),
    };
    let address = listener.local_addr().map_err(|source| EddyError::Network {
        action: "cannot bind the Prometheus reporter to",
        address: config.host.clone(),
        source,
    })?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move {
                let body = tokio::task::spawn_blocking(move || render()).await.unwrap_or_default();
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
                    .into_response()
            }
        }),
    );
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the Prometheus reporter ended");
        }
    });
    tracing::info!(%address, "Prometheus reporter serving /metrics");
    Ok((address, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_by_flink_or_short_keys() {
        let conf = |pairs: &[(&str, &str)]| {
            let mut c = Configuration::new();
            for (k, v) in pairs {
                c.set(*k, *v);
            }
            config(&c).unwrap()
        };
        assert_eq!(conf(&[]), None);
        let default = PromConfig { host: "127.0.0.1".into(), ports: vec![9249] };
        assert_eq!(conf(&[("metrics.reporter", "prom")]), Some(default.clone()));
        assert_eq!(conf(&[("metrics.reporter", "prometheus")]), Some(default.clone()));
        assert_eq!(
            conf(&[(
                "metrics.reporter.prom.factory.class",
                "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
            )]),
            Some(default)
        );
        let c =
            conf(&[("metrics.reporter.prom.port", "9250-9252"), ("metrics.reporter.prom.host", "0.0.0.0")]);
        assert_eq!(c, Some(PromConfig { host: "0.0.0.0".into(), ports: vec![9250, 9251, 9252] }));
        let mut bad = Configuration::new();
        bad.set("metrics.reporter.prom.port", "ninety");
        assert!(config(&bad).unwrap_err().to_string().contains("metrics.reporter.prom.port"));
    }

    #[test]
    fn writes_the_text_format() {
        let mut w = TextWriter::default();
        w.sample(
            "eddy_taskmanager_job_task_numRecordsIn",
            &[("job_name", "a \"b\"\n"), ("subtask_index", "0")],
            5.0,
        );
        w.sample("eddy_jobmanager_Status.CPU.Load", &[], 0.25);
        w.sample("eddy_taskmanager_job_task_numRecordsIn", &[("job_name", "c"), ("subtask_index", "1")], 7.0);
        let text = w.finish();
        assert_eq!(
            text,
            "# TYPE eddy_jobmanager_Status_CPU_Load gauge\neddy_jobmanager_Status_CPU_Load 0.25\n\
             # TYPE eddy_taskmanager_job_task_numRecordsIn gauge\n\
             eddy_taskmanager_job_task_numRecordsIn{job_name=\"a \\\"b\\\"\\n\",subtask_index=\"0\"} 5\n\
             eddy_taskmanager_job_task_numRecordsIn{job_name=\"c\",subtask_index=\"1\"} 7\n"
        );
        assert_eq!(split_operator("Source: a.txt.numRecordsIn"), (Some("Source: a.txt"), "numRecordsIn"));
        assert_eq!(split_operator("numRecordsIn"), (None, "numRecordsIn"));
    }
}
