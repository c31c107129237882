//! `eddy cluster start|stop`: a standalone cluster on this machine, from the conf directory.
//!
//! `start` launches `eddy jobmanager` and one `eddy taskmanager` per line of the `workers` file
//! as background processes (their own process groups, so the terminal's Ctrl-C does not reach
//! them), logging to `env.log.dir` (default `./log`) and recording their process ids in
//! `env.pid.dir` (default the system's temporary directory). It returns once the JobManager's
//! REST API answers and every TaskManager has registered. `stop` terminates the recorded
//! processes (SIGTERM) and waits for them to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_cluster::options;
use eddy_core::config::{CONF_DIR_ENV, DEFAULT_CONF_DIR};
use eddy_core::{EddyError, Result};

const JOBMANAGER_PID: &str = "eddy-jobmanager.pid";
const TASKMANAGER_PID: &str = "eddy-taskmanager.pid";

fn conf_dir() -> PathBuf {
    let dir =
        std::env::var(CONF_DIR_ENV).ok().filter(|d| !d.trim().is_empty()).unwrap_or(DEFAULT_CONF_DIR.into());
    let dir = PathBuf::from(dir);
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

fn pid_dir(config: &eddy_core::Configuration) -> Result<PathBuf> {
    let dir = config.get(&options::PID_DIR)?;
    Ok(if dir.trim().is_empty() { std::env::temp_dir() } else { PathBuf::from(dir) })
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> EddyError {
    EddyError::Io { action, path: path.to_path_buf(), source }
}

/// The hosts of the `workers` file: one per line, `#` comments and blank lines skipped.
pub fn read_workers(conf_dir: &Path) -> Result<Vec<String>> {
    let path = conf_dir.join("workers");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec!["localhost".into()]),
        Err(e) => return Err(io("cannot read", &path, e)),
    };
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Starts `eddy <role>` in the background; returns its pid.
fn launch(role: &str, index: usize, properties: &[String], conf_dir: &Path, log_dir: &Path) -> Result<u32> {
    let exe = std::env::current_exe()
        .map_err(|e| EddyError::user(format!("cannot find the eddy executable: {e}")))?;
    std::fs::create_dir_all(log_dir).map_err(|e| io("cannot create", log_dir, e))?;
    let log_path = log_dir.join(format!("eddy-{role}-{index}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io("cannot open", &log_path, e))?;
    let err = log.try_clone().map_err(|e| io("cannot open", &log_path, e))?;
    let mut command = Command::new(exe);
    command.arg(role);
    for p in properties {
        command.arg("-D").arg(p);
    }
    command.env(CONF_DIR_ENV, conf_dir).stdin(Stdio::null()).stdout(log).stderr(err);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let child = command.spawn().map_err(|e| EddyError::user(format!("cannot start eddy {role}: {e}")))?;
    Ok(child.id())
}

fn append_pid(file: &Path, pid: u32) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| io("cannot open", file, e))?;
    writeln!(f, "{pid}").map_err(|e| io("cannot write", file, e))
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    while !ready() {
        if start.elapsed() > timeout {
            return Err(EddyError::user(format!("{what} did not happen within {timeout:?}; see the logs")));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
    Ok(())
}

pub fn start(properties: &[String]) -> Result<()> {
    let conf_dir = conf_dir();
    let config = super::configuration(properties)?;
    let workers = read_workers(&conf_dir)?;
    if let Some(remote) = workers.iter().find(|h| !eddy_cluster::jobmanager::is_loopback(h)) {
        return Err(EddyError::user(format!(
            "the workers file names {remote:?}: starting TaskManagers on other machines is not supported by \
             `eddy cluster start`; run `eddy taskmanager` there with the same conf directory"
        )));
    }
    let pids = pid_dir(&config)?;
    std::fs::create_dir_all(&pids).map_err(|e| io("cannot create", &pids, e))?;
    let log_dir = PathBuf::from(options::or_default(config.get(&options::LOG_DIR)?, "log"));
    let jm_pid_file = pids.join(JOBMANAGER_PID);
    if let Ok(text) = std::fs::read_to_string(&jm_pid_file) {
        if text.lines().filter_map(|l| l.trim().parse::<u32>().ok()).any(alive) {
            return Err(EddyError::user(format!(
                "a cluster started from here is still running (see {}); stop it first with `eddy cluster stop`",
                jm_pid_file.display()
            )));
        }
    }
    let _ = std::fs::remove_file(&jm_pid_file);
    let _ = std::fs::remove_file(pids.join(TASKMANAGER_PID));

    println!("Starting cluster.");
    let host = options::or_default(config.get(&options::JOBMANAGER_RPC_ADDRESS)?, "127.0.0.1");
    let pid = launch("jobmanager", 0, properties, &conf_dir, &log_dir)?;
    append_pid(&jm_pid_file, pid)?;
    println!("Starting jobmanager daemon on host {host} (pid {pid}).");
    let rest =
        super::rest_client(&super::Target { jobmanager: None, properties: properties.to_vec() }, &config)?;
    wait_until("the JobManager's REST API answering", Duration::from_secs(30), || {
        rest.get("/overview").is_ok()
    })?;
    for (i, worker) in workers.iter().enumerate() {
        let pid = launch("taskmanager", i, properties, &conf_dir, &log_dir)?;
        append_pid(&pids.join(TASKMANAGER_PID), pid)?;
        println!("Starting taskmanager daemon on host {worker} (pid {pid}).");
    }
    let expected = workers.len();
    wait_until(&format!("{expected} TaskManager(s) registering"), Duration::from_secs(30), || {
        rest.get("/overview")
            .ok()
            .and_then(|o| o.get("taskmanagers").and_then(|t| t.as_u64()))
            .is_some_and(|n| n as usize >= expected)
    })?;
    println!("Cluster started: REST API {} with {expected} TaskManager(s).", rest.base());
    Ok(())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false)
}

fn terminate(pid: u32) {
    #[cfg(unix)]
    // SAFETY: kill(2) takes plain integers and has no memory effects; a pid that is gone
    // makes it return ESRCH, which `stop` notices when it checks that the process ended.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

pub fn stop(properties: &[String]) -> Result<()> {
    let config = super::configuration(properties)?;
    let pids = pid_dir(&config)?;
    let mut any = false;
    for (file, role) in [(TASKMANAGER_PID, "taskmanager"), (JOBMANAGER_PID, "jobmanager")] {
        let path = pids.join(file);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            if alive(pid) {
                any = true;
                println!("Stopping {role} daemon (pid: {pid}).");
                terminate(pid);
                wait_until(&format!("{role} (pid {pid}) stopping"), Duration::from_secs(30), || !alive(pid))?;
            } else {
                println!("No {role} daemon (pid: {pid}) is running anymore.");
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    if !any {
        println!("No cluster to stop.");
    }
    Ok(())
}
