//! `eddy`: run, list, cancel and stop jobs on a cluster, take their savepoints; start the
//! cluster's JobManager and TaskManagers.

mod cluster;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use eddy_cluster::client::RestClient;
use eddy_cluster::options;
use eddy_cluster::worker::env;
use eddy_core::config::{parse_dynamic_properties, PROPERTIES_ENV};
use eddy_core::{Configuration, EddyError, Result};

#[derive(Parser)]
#[command(name = "eddy", version, about = "Run Eddy jobs and clusters", disable_help_subcommand = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a JobManager in the foreground (dispatcher, REST API, resource manager, job masters).
    Jobmanager(ProcessArgs),
    /// Run a TaskManager in the foreground: offers slots, runs the subtasks it is given.
    Taskmanager(ProcessArgs),
    /// Start or stop a standalone cluster on this machine from the conf directory.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Submit a job binary: it builds its job graph and uploads itself to the JobManager.
    Run(RunArgs),
    /// List the jobs of a cluster.
    List {
        #[command(flatten)]
        target: Target,
        /// Also show jobs that have ended.
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Cancel a job.
    Cancel {
        #[command(flatten)]
        target: Target,
        job_id: String,
    },
    /// Take a savepoint of a running job; the job goes on.
    Savepoint {
        #[command(flatten)]
        target: Target,
        job_id: String,
        /// Where the savepoint folder goes (default: the job's state.savepoints.dir).
        target_directory: Option<PathBuf>,
    },
    /// Stop a job with a savepoint: its sources stop, the savepoint is taken, the job finishes.
    Stop {
        #[command(flatten)]
        target: Target,
        /// Where the savepoint folder goes (default: the job's state.savepoints.dir).
        #[arg(short = 'p', long = "savepointPath", value_name = "DIRECTORY")]
        savepoint_path: Option<PathBuf>,
        /// End the input first (maximum watermark): every timer and window fires before the
        /// savepoint. Without it the job is suspended, with what is pending in the savepoint.
        #[arg(short = 'd', long)]
        drain: bool,
        job_id: String,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Start a JobManager and one TaskManager per line of conf/workers, in the background.
    Start(ProcessArgs),
    /// Stop what `eddy cluster start` started.
    Stop(ProcessArgs),
}

#[derive(Args)]
struct ProcessArgs {
    /// Configuration overrides (`-D key=value`), after the conf directory's eddy.yaml.
    #[arg(short = 'D', value_name = "KEY=VALUE", allow_hyphen_values = true)]
    properties: Vec<String>,
}

#[derive(Args)]
struct Target {
    /// The JobManager's REST address, host:port (default: rest.address:rest.port of the conf).
    #[arg(short = 'm', long = "jobmanager", value_name = "HOST:PORT")]
    jobmanager: Option<String>,
    /// Configuration overrides (`-D key=value`).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The parallelism of operators that do not set their own (parallelism.default).
    #[arg(short = 'p', long)]
    parallelism: Option<usize>,
    /// Submit and return; do not wait for the job to end.
    #[arg(short = 'd', long)]
    detached: bool,
    /// Start the job from this savepoint (or retained checkpoint) folder, at any parallelism
    /// (execution.savepoint.path).
    #[arg(short = 's', long = "fromSavepoint", value_name = "PATH")]
    from_savepoint: Option<PathBuf>,
    /// With --fromSavepoint: skip state of operators the job no longer has instead of failing
    /// (execution.savepoint.ignore-unclaimed-state).
    #[arg(short = 'n', long = "allowNonRestoredState", requires = "from_savepoint")]
    allow_non_restored_state: bool,
    /// The job binary.
    binary: PathBuf,
    /// The job's own arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The `-D key=value` overrides.
fn overrides(properties: &[String]) -> Result<Configuration> {
    let args = properties.iter().flat_map(|p| ["-D".to_string(), p.clone()]);
    Ok(parse_dynamic_properties(args)?.0)
}

/// The conf directory's configuration with `-D` overrides on top.
fn configuration(properties: &[String]) -> Result<Configuration> {
    let mut config = Configuration::load_default()?;
    config.merge(&overrides(properties)?);
    Ok(config)
}

/// A client of the JobManager `target` names, or the one `config` names.
fn rest_client(target: &Target, config: &Configuration) -> Result<RestClient> {
    let token = config.get_optional(&options::REST_SUBMISSION_TOKEN)?;
    let address = match &target.jobmanager {
        Some(a) => a.clone(),
        None => {
            let rpc = options::or_default(config.get(&options::JOBMANAGER_RPC_ADDRESS)?, "127.0.0.1");
            let host = options::or_default(config.get(&options::REST_ADDRESS)?, &rpc);
            format!("{host}:{}", config.get(&options::REST_PORT)?)
        }
    };
    Ok(RestClient::new(&address, token))
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let config = configuration(&args.target.properties)?;
    let client = rest_client(&args.target, &config)?;
    let mut overrides = overrides(&args.target.properties)?;
    let parallelism = match args.parallelism {
        Some(p) => Some(p),
        None => config.get_optional(&eddy_core::config::options::PARALLELISM_DEFAULT)?,
    };
    if let Some(p) = parallelism {
        overrides.set(eddy_core::config::options::PARALLELISM_DEFAULT.key, p.to_string());
    }
    if let Some(path) = &args.from_savepoint {
        let path = absolute(path)?;
        overrides.set(eddy_core::config::options::SAVEPOINT_PATH.key, path.to_string_lossy().as_ref());
        let key = eddy_core::config::options::SAVEPOINT_IGNORE_UNCLAIMED_STATE.key;
        overrides.set(key, args.allow_non_restored_state.to_string());
    }
    let mut properties = std::env::var(PROPERTIES_ENV).unwrap_or_default();
    if !properties.is_empty() && !properties.ends_with('\n') {
        properties.push('\n');
    }
    properties.push_str(&overrides.to_yaml());
    let binary = if args.binary.components().count() == 1 && !args.binary.exists() {
        return Err(EddyError::user(format!("job binary {} not found", args.binary.display())));
    } else {
        args.binary.clone()
    };
    let mut command = std::process::Command::new(&binary);
    command
        .args(&args.args)
        .env(env::CLIENT_REST, client.base())
        .env(PROPERTIES_ENV, properties)
        .env_remove(env::JOB_ID);
    if args.detached {
        command.env(env::DETACHED, "1");
    }
    if let Some(token) = config.get_optional(&options::REST_SUBMISSION_TOKEN)? {
        command.env(env::TOKEN, token);
    }
    let status = command
        .status()
        .map_err(|e| EddyError::user(format!("cannot start the job binary {}: {e}", binary.display())))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}

fn list(target: Target, all: bool) -> Result<()> {
    let client = rest_client(&target, &configuration(&target.properties)?)?;
    let overview = client.get("/jobs/overview")?;
    let jobs = overview.get("jobs").and_then(|j| j.as_array()).cloned().unwrap_or_default();
    let line = |j: &serde_json::Value| {
        let start = j.get("start-time").and_then(|t| t.as_i64()).unwrap_or(0);
        format!(
            "{} : {} : {} ({})",
            format_time(start),
            j.get("jid").and_then(|v| v.as_str()).unwrap_or(""),
            j.get("name").and_then(|v| v.as_str()).unwrap_or(""),
            j.get("state").and_then(|v| v.as_str()).unwrap_or("")
        )
    };
    let ended = |j: &serde_json::Value| {
        matches!(j.get("state").and_then(|v| v.as_str()), Some("FINISHED" | "FAILED" | "CANCELED"))
    };
    let running: Vec<_> = jobs.iter().filter(|j| !ended(j)).collect();
    if running.is_empty() {
        println!("No running jobs.");
    } else {
        println!("------------------ Running/Restarting Jobs -------------------");
        running.iter().for_each(|j| println!("{}", line(j)));
        println!("--------------------------------------------------------------");
    }
    if all {
        let done: Vec<_> = jobs.iter().filter(|j| ended(j)).collect();
        if done.is_empty() {
            println!("No terminated jobs.");
        } else {
            println!("---------------------- Terminated Jobs -----------------------");
            done.iter().for_each(|j| println!("{}", line(j)));
            println!("--------------------------------------------------------------");
        }
    }
    Ok(())
}

/// `dd.MM.yyyy HH:mm:ss` in UTC, as Flink's CLI prints job start times.
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{day:02}.{month:02}.{year} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn cancel(target: Target, job_id: String) -> Result<()> {
    let client = rest_client(&target, &configuration(&target.properties)?)?;
    println!("Cancelling job {job_id}.");
    client.cancel(&job_id)?;
    let state = client.wait_for_end(&job_id, Some(Duration::from_secs(60)))?;
    match state.state.as_str() {
        "CANCELED" => {
            println!("Cancelled job {job_id}.");
            Ok(())
        }
        other => Err(EddyError::user(format!("job {job_id} is {other} after the cancel request"))),
    }
}

/// `path` from this directory: the JobManager resolves paths from its own.
fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| EddyError::user(format!("cannot make the path {} absolute: {e}", path.display())))
}

fn savepoint(target: Target, job_id: String, directory: Option<PathBuf>) -> Result<()> {
    let client = rest_client(&target, &configuration(&target.properties)?)?;
    let directory = directory.as_deref().map(absolute).transpose()?;
    println!("Triggering savepoint for job {job_id}.");
    let trigger = client.trigger_savepoint(&job_id, directory.as_deref().and_then(|d| d.to_str()), false)?;
    println!("Waiting for response...");
    let path = client.wait_for_savepoint(&job_id, &trigger)?;
    println!("Savepoint completed. Path: {path}");
    println!("Resume a job from it with: eddy run --fromSavepoint {path} <job binary> ...");
    Ok(())
}

fn stop(target: Target, job_id: String, directory: Option<PathBuf>, drain: bool) -> Result<()> {
    let client = rest_client(&target, &configuration(&target.properties)?)?;
    let directory = directory.as_deref().map(absolute).transpose()?;
    let how = if drain { "Draining" } else { "Suspending" };
    println!("{how} job \"{job_id}\" with a savepoint.");
    let trigger =
        client.stop_with_savepoint(&job_id, directory.as_deref().and_then(|d| d.to_str()), drain)?;
    let path = client.wait_for_savepoint(&job_id, &trigger)?;
    println!("Savepoint completed. Path: {path}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Jobmanager(a) => {
            init_logging();
            configuration(&a.properties)
                .and_then(eddy_cluster::jobmanager::run_foreground)
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Taskmanager(a) => {
            init_logging();
            configuration(&a.properties)
                .and_then(eddy_cluster::taskmanager::run_foreground)
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Cluster { action: ClusterAction::Start(a) } => {
            cluster::start(&a.properties).map(|_| ExitCode::SUCCESS)
        }
        Command::Cluster { action: ClusterAction::Stop(a) } => {
            cluster::stop(&a.properties).map(|_| ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args),
        Command::List { target, all } => list(target, all).map(|_| ExitCode::SUCCESS),
        Command::Cancel { target, job_id } => cancel(target, job_id).map(|_| ExitCode::SUCCESS),
        Command::Savepoint { target, job_id, target_directory } => {
            savepoint(target, job_id, target_directory).map(|_| ExitCode::SUCCESS)
        }
        Command::Stop { target, savepoint_path, drain, job_id } => {
            stop(target, job_id, savepoint_path, drain).map(|_| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("\n------------------------------------------------------------");
            eprintln!(" The program finished with the following exception:\n");
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_flinks_cli_does() {
        assert_eq!(super::format_time(0), "01.01.1970 00:00:00");
        assert_eq!(super::format_time(1_795_258_800_123), "21.11.2026 11:00:00");
        assert_eq!(super::format_time(951_782_400_000), "29.02.2000 00:00:00");
    }
}
