//! The cluster's configuration keys: Flink's names where Flink has the key, Eddy's own
//! otherwise (marked so in their descriptions).

use std::time::Duration;

use eddy_core::config::{ConfigOption, ConfigValue};

/// A number of bytes in Flink's memory-size syntax: a whole number and an optional unit
/// (`b`, `k`/`kb`/`kibibytes`, `m`/`mb`, `g`/`gb`, `t`/`tb`; any case, powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySize(pub u64);

impl ConfigValue for MemorySize {
    fn parse_value(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = (&s[..digits_end], s[digits_end..].trim());
        if number.is_empty() {
            return Err("expected a memory size: a whole number with an optional unit, such as \
                        '512 mb' or '1 gb' (a plain number means bytes)"
                .to_string());
        }
        let shift = match unit.to_ascii_lowercase().as_str() {
            "" | "b" | "bytes" => 0,
            "k" | "kb" | "kibibytes" => 10,
            "m" | "mb" | "mebibytes" => 20,
            "g" | "gb" | "gibibytes" => 30,
            "t" | "tb" | "tebibytes" => 40,
            other => return Err(format!("unknown memory unit {other:?} (use b, kb, mb, gb or tb)")),
        };
        let count: u64 = number.parse().map_err(|_| format!("the memory size {s:?} is too large"))?;
        count
            .checked_mul(1u64 << shift)
            .map(MemorySize)
            .ok_or_else(|| format!("the memory size {s:?} is too large"))
    }

    fn to_value(&self) -> String {
        let units = [(40, "tb"), (30, "gb"), (20, "mb"), (10, "kb")];
        for (shift, name) in units {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return format!("{} {name}", self.0 >> shift);
            }
        }
        format!("{} b", self.0)
    }
}

pub const JOBMANAGER_RPC_ADDRESS: ConfigOption<String> = ConfigOption::new(
    "jobmanager.rpc.address",
    String::new(),
    "The address of the JobManager's control RPC: where it binds, and where TaskManagers find it \
     (default 127.0.0.1).",
);

pub const JOBMANAGER_RPC_PORT: ConfigOption<u32> =
    ConfigOption::new("jobmanager.rpc.port", 6123, "The port of the JobManager's control RPC.");

pub const REST_ADDRESS: ConfigOption<String> = ConfigOption::new(
    "rest.address",
    String::new(),
    "The address clients use for the REST API (default: jobmanager.rpc.address, else 127.0.0.1).",
);

pub const REST_BIND_ADDRESS: ConfigOption<String> = ConfigOption::new(
    "rest.bind-address",
    String::new(),
    "Where the REST server binds (default: rest.address, else 127.0.0.1).",
);

pub const REST_PORT: ConfigOption<u32> =
    ConfigOption::new("rest.port", 8081, "The port of the REST API (0: any free port).");

pub const REST_SUBMISSION_TOKEN: ConfigOption<String> = ConfigOption::without_default(
    "rest.submission.token",
    "(Eddy) A bearer token that job submission, uploads and cancellation require. Required for \
     these requests when the REST server binds beyond loopback.",
);

pub const RPC_TOKEN: ConfigOption<String> = ConfigOption::without_default(
    "cluster.rpc.token",
    "(Eddy) A bearer token every control RPC between the JobManager, TaskManagers and workers \
     must carry. Required when the RPC binds beyond loopback.",
);

pub const REST_UPLOAD_MAX_SIZE: ConfigOption<MemorySize> = ConfigOption::new(
    "rest.upload.max-size",
    MemorySize(512 << 20),
    "(Eddy) The largest job artifact the REST API accepts.",
);

pub const WEB_UPLOAD_DIR: ConfigOption<String> = ConfigOption::without_default(
    "web.upload.dir",
    "Where the JobManager stores uploaded job artifacts (default: a directory under the system's \
     temporary directory, removed when the JobManager stops).",
);

pub const WEB_REFRESH_INTERVAL: ConfigOption<Duration> = ConfigOption::new(
    "web.refresh-interval",
    Duration::from_secs(3),
    "How often the web dashboard refreshes what it shows.",
);

pub const WEB_SUBMIT_ENABLE: ConfigOption<bool> = ConfigOption::new(
    "web.submit.enable",
    true,
    "Whether job binaries can be run from the web dashboard (POST /artifacts/:id/run). Uploads \
     and submissions still need rest.submission.token where one is required.",
);

pub const WEB_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "web.timeout",
    Duration::from_secs(600),
    "How long a job binary run from the dashboard (POST /artifacts/:id/run) may take to submit its \
     job before it is stopped.",
);

pub const TASKMANAGER_HOST: ConfigOption<String> = ConfigOption::new(
    "taskmanager.host",
    String::new(),
    "The address a TaskManager binds its RPC and its workers' data plane to, and announces \
     (default 127.0.0.1).",
);

pub const TASKMANAGER_RPC_PORT: ConfigOption<u32> =
    ConfigOption::new("taskmanager.rpc.port", 0, "The port of a TaskManager's RPC (0: any free port).");

pub const TASKMANAGER_RESOURCE_ID: ConfigOption<String> = ConfigOption::without_default(
    "taskmanager.resource-id",
    "The TaskManager's id (default: its address and a random suffix).",
);

pub const HEARTBEAT_INTERVAL: ConfigOption<Duration> = ConfigOption::new(
    "heartbeat.interval",
    Duration::from_secs(10),
    "How often a TaskManager tells the JobManager it is alive.",
);

pub const HEARTBEAT_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "heartbeat.timeout",
    Duration::from_secs(50),
    "After how long without a heartbeat a TaskManager counts as lost.",
);

pub const SLOT_REQUEST_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "slot.request.timeout",
    Duration::from_secs(300),
    "How long a job waits for enough free slots before it fails.",
);

pub const EVENLY_SPREAD_OUT_SLOTS: ConfigOption<bool> = ConfigOption::new(
    "cluster.evenly-spread-out-slots",
    false,
    "Take a job's slots round-robin from all TaskManagers instead of filling one TaskManager \
     after the other.",
);

pub const WORKER_REGISTRATION_TIMEOUT: ConfigOption<Duration> = ConfigOption::new(
    "taskmanager.worker.registration-timeout",
    Duration::from_secs(60),
    "(Eddy) How long a job master waits for the worker processes of an attempt to start and \
     register before the attempt fails.",
);

pub const WORKING_DIR: ConfigOption<String> = ConfigOption::without_default(
    "process.taskmanager.working-dir",
    "Where a TaskManager keeps fetched job artifacts (default: a directory under the system's \
     temporary directory).",
);

pub const PID_DIR: ConfigOption<String> = ConfigOption::new(
    "env.pid.dir",
    String::new(),
    "Where `eddy cluster start` writes the process ids of what it started (default: the \
     system's temporary directory).",
);

pub const LOG_DIR: ConfigOption<String> = ConfigOption::new(
    "env.log.dir",
    String::new(),
    "Where `eddy cluster start` writes the processes' logs (default: ./log).",
);

/// `value` if set and not empty, else `default`.
pub fn or_default(value: String, default: &str) -> String {
    if value.trim().is_empty() {
        default.to_string()
    } else {
        value.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_in_flinks_syntax() {
        assert_eq!(MemorySize::parse_value("512 mb"), Ok(MemorySize(512 << 20)));
        assert_eq!(MemorySize::parse_value("1g"), Ok(MemorySize(1 << 30)));
        assert_eq!(MemorySize::parse_value("100"), Ok(MemorySize(100)));
        assert_eq!(MemorySize::parse_value("3 KB"), Ok(MemorySize(3 << 10)));
        assert!(MemorySize::parse_value("1.5 gb").unwrap_err().contains("unknown memory unit"));
        assert!(MemorySize::parse_value("mb").is_err());
        assert!(MemorySize::parse_value("99999999999999999999 tb").unwrap_err().contains("too large"));
        assert_eq!(MemorySize(512 << 20).to_value(), "512 mb");
        assert_eq!(MemorySize(1000).to_value(), "1000 b");
    }
}
