//! What the cluster tests share: processes of a cluster on loopback, its REST API, and the
//! example job binaries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn eddy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_eddy"))
}

/// An example binary of eddy-examples (`word_count`, ...), built next to `eddy`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_BIN_EXE_eddy")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p eddy-examples --bins` first)",
        path.display()
    );
    path.to_str().unwrap().to_string()
}

/// A child process killed (SIGKILL) when dropped, with its stdout lines forwarded.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(mut command: Command, log: &Path) -> Proc {
        let stderr = std::fs::File::create(log).unwrap();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        Proc { child, lines }
    }

    /// The first stdout line containing `needle` (waits for it, up to a minute).
    pub fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?} on stdout: {e}"),
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JobManager and TaskManagers, each its own process.
pub struct Cluster {
    // Processes first: fields drop in order, and the directory must outlive them.
    pub taskmanagers: Vec<(String, Proc)>,
    _jobmanager: Proc,
    pub rest: String,
    rpc_port: u16,
    properties: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// A JobManager on free ports with `properties` (`key=value`) set for it and its TaskManagers.
    pub fn start(properties: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let properties: Vec<String> = properties.iter().map(|p| p.to_string()).collect();
        let mut command = Command::new(eddy_bin());
        command.arg("jobmanager").args(["-D", "rest.port=0", "-D", "jobmanager.rpc.port=0", "-D"]);
        command.arg(format!("web.upload.dir={}", dir.path().join("jm-artifacts").display()));
        for p in &properties {
            command.args(["-D", p]);
        }
        command.env("EDDY_CONF_DIR", "").current_dir(dir.path());
        let jobmanager = Proc::spawn(command, &dir.path().join("jobmanager.log"));
        // "JobManager running: REST API http://127.0.0.1:PORT , RPC 127.0.0.1:PORT"
        let line = jobmanager.line_with("JobManager running");
        let rest = line.split("http://").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
        let rpc_port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        Cluster { taskmanagers: Vec::new(), _jobmanager: jobmanager, rest, rpc_port, properties, dir }
    }

    /// Starts a TaskManager with `slots` slots and waits until the JobManager lists it.
    pub fn add_taskmanager(&mut self, slots: usize) -> String {
        let proc = self.spawn_taskmanager(slots, &[]);
        let line = proc.line_with("running: RPC");
        let id = line.split_whitespace().nth(1).unwrap().to_string();
        self.taskmanagers.push((id.clone(), proc));
        self.wait_for(&format!("TaskManager {id} registered"), |c| {
            c.get("/taskmanagers")["taskmanagers"].as_array().unwrap().iter().any(|t| t["id"] == id.as_str())
        });
        id
    }

    /// Starts a TaskManager process with `extra` properties last.
    pub fn spawn_taskmanager(&self, slots: usize, extra: &[&str]) -> Proc {
        let index = self.taskmanagers.len();
        let mut command = Command::new(eddy_bin());
        command.arg("taskmanager").args([
            "-D".to_string(),
            format!("jobmanager.rpc.port={}", self.rpc_port),
            "-D".to_string(),
            format!("taskmanager.numberOfTaskSlots={slots}"),
            "-D".to_string(),
            // Shared by the TaskManagers: the artifact is fetched once per test.
            format!("process.taskmanager.working-dir={}", self.dir.path().join("tm-work").display()),
        ]);
        for p in self.properties.iter().map(String::as_str).chain(extra.iter().copied()) {
            command.args(["-D", p]);
        }
        command.env("EDDY_CONF_DIR", "").current_dir(self.dir.path());
        Proc::spawn(command, &self.dir.path().join(format!("taskmanager-{index}-{}.log", extra.len())))
    }

    /// The first line of the JobManager's stdout after its start line that contains `needle`.
    pub fn jobmanager_line(&self, needle: &str) -> String {
        self._jobmanager.line_with(needle)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.rest)
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder().http_status_as_error(false).build().into()
    }

    /// GET `path`; panics unless 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Any request; returns the status and the JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let agent = Self::agent();
        let url = self.url(path);
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("PATCH", _) => agent.patch(&url).send_empty(),
            ("POST", Some(b)) => agent.post(&url).send(&b[..]),
            ("POST", None) => agent.post(&url).send_empty(),
            _ => panic!("unsupported {method}"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}")),
        )
    }

    /// Polls the REST API until `condition` holds (at most two minutes).
    pub fn wait_for(&self, what: &str, mut condition: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !condition(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `eddy <args>` against this cluster: (exit success, stdout, stderr).
    pub fn eddy(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(eddy_bin())
            .args(args)
            .env("EDDY_CONF_DIR", "")
            .env("RUST_LOG", "warn")
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    pub fn job_state(&self, id: &str) -> String {
        self.get(&format!("/jobs/{id}"))["state"].as_str().unwrap().to_string()
    }

    pub fn taskmanager_holding(&self, job: &str) -> Vec<String> {
        self.taskmanagers
            .iter()
            .filter(|(id, _)| {
                self.get(&format!("/taskmanagers/{id}"))["allocatedSlots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["jobId"] == job)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The lines of every file in `dir`, sorted.
pub fn sorted_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

/// Runs an example binary on the local mini-cluster; returns its output directory's lines.
pub fn local_result(binary: &str, args: &[&str], out: &Path) -> Vec<String> {
    let status = Command::new(binary)
        .args(args)
        .arg("--output")
        .arg(out)
        .env("EDDY_CONF_DIR", "")
        .env_remove("EDDY_JOBMANAGER_ADDRESS")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    sorted_lines(out)
}

pub fn write_text(path: &Path, lines: usize) {
    let words = ["to", "be", "or", "not", "stream", "eddy", "flink", "state", "window", "time", "key"];
    let mut text = String::new();
    for i in 0..lines {
        for j in 0..7 {
            text.push_str(words[(i * 7 + j * 3 + i / 5) % words.len()]);
            text.push(if j == 6 { '\n' } else { ' ' });
        }
    }
    std::fs::write(path, text).unwrap();
}

pub fn job_id_from(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Job has been submitted with JobID "))
        .unwrap_or_else(|| panic!("no job id in {stdout}"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Killing the processes of a job at random points (the exactly-once acceptance tests)
// ---------------------------------------------------------------------------------------------

/// A small, seeded generator (SplitMix64), so that a run's random choices can be replayed.
pub struct SplitMix(pub u64);

impl SplitMix {
    /// `EDDY_TEST_SEED`, else a seed taken from the clock; printed, so a failing run can be
    /// replayed.
    pub fn from_env(what: &str) -> SplitMix {
        let seed = match std::env::var("EDDY_TEST_SEED") {
            Ok(s) => s.parse().unwrap_or_else(|_| panic!("EDDY_TEST_SEED={s} is not a number")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        };
        println!("{what}: seed {seed} (EDDY_TEST_SEED={seed} replays it)");
        SplitMix(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The child processes of `pid` (from `/proc/<pid>/task/*/children`).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(text.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    children
}

/// The worker process a TaskManager (process `taskmanager_pid`) started for `attempt` of
/// `job`, told by the environment the TaskManager gave it.
pub fn worker_pid(taskmanager_pid: u32, job: &str, attempt: u64) -> Option<u32> {
    let wanted = [format!("EDDY_WORKER_JOB_ID={job}"), format!("EDDY_WORKER_ATTEMPT={attempt}")];
    child_pids(taskmanager_pid).into_iter().find(|pid| {
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        wanted.iter().all(|w| vars.contains(&w.as_bytes()))
    })
}

/// `kill -9 <pid>`.
pub fn kill_9(pid: u32) {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -9 {pid} failed");
}
