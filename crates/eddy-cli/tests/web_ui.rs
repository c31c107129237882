//! The web dashboard in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver), against a cluster of JobManager and TaskManager processes.
//!
//! What a user sees and does: the overview's TaskManager and slot counts; a running job's
//! graph (its vertices as SVG nodes with their names) and its record counts moving between
//! refreshes; completed checkpoints in the checkpoints tab; cancelling the job from the page
//! and finding it among the completed jobs as CANCELED; submitting a job by uploading its
//! binary, with the submission token typed into the page.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them) and the example binaries (`cargo test
//! --workspace` builds them). Screenshots go to `$CARGO_TARGET_TMPDIR/web_ui/`.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;

use common::*;
use serde_json::{json, Value};
use webdriver::Browser;

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web_ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the overview's stat `key`, once it equals `expected`.
fn wait_for_stat(browser: &Browser, key: &str, expected: &str) {
    browser.wait_for(
        &format!("the overview's {key} to be {expected}"),
        "const el = document.querySelector(`[data-stat='${arguments[0]}'] .stat-value`);
         return el && el.textContent === arguments[1];",
        json!([key, expected]),
    );
}

/// The number of refreshes the page has done.
fn refreshes(browser: &Browser) -> u64 {
    browser.js("return Number(document.body.dataset.refreshed || 0)", json!([])).as_u64().unwrap()
}

#[test]
fn the_dashboard_shows_the_cluster_and_a_running_job_and_cancels_it() {
    let mut cluster = Cluster::start(&["web.refresh-interval=500 ms"]);
    cluster.add_taskmanager(2);
    cluster.add_taskmanager(2);
    let browser = Browser::start(&cluster.dir.path().join("chromedriver.log"));
    let shots = screenshot_dir();

    // The overview: two TaskManagers with four slots, all free.
    browser.open(&cluster.url("/"));
    wait_for_stat(&browser, "taskmanagers", "2");
    wait_for_stat(&browser, "slots-total", "4");
    wait_for_stat(&browser, "slots-available", "4");

    // A job that runs until it is cancelled: readings in real time, checkpoints every 300 ms.
    let out = cluster.dir.path().join("out");
    let binary = example("sensor_averages");
    let (ok, stdout, stderr) = cluster.eddy(&[
        "run",
        "-m",
        &cluster.rest,
        "-d",
        &binary,
        "--rate",
        "400",
        "-p",
        "2",
        "--checkpoint-interval",
        "300",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    let job = job_id_from(&stdout);

    // The overview lists it among the running jobs, and its slots are taken.
    browser.wait_for(
        "the job in the overview's running jobs",
        "return !!document.querySelector(`#running tr[data-job-id='${arguments[0]}'][data-state='RUNNING']`)",
        json!([job]),
    );
    wait_for_stat(&browser, "slots-available", "2");
    browser.screenshot(&shots.join("overview.png"));

    // The job page draws every vertex of the job as an SVG node with its name.
    browser.open(&cluster.url(&format!("/#/jobs/{job}")));
    let vertices: Vec<(String, String)> = cluster.get(&format!("/jobs/{job}"))["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap().to_string(), v["name"].as_str().unwrap().to_string()))
        .collect();
    assert!(vertices.len() >= 2, "a source and a window vertex at least: {vertices:?}");
    let drawn = browser.wait_for(
        "every vertex drawn in the job graph",
        "const nodes = [...document.querySelectorAll('svg#job-graph g.vertex')];
         if (nodes.length !== arguments[0]) return null;
         return nodes.map(n => [n.dataset.vertexId, n.dataset.name, n.querySelector('.vertex-name').textContent]);",
        json!([vertices.len()]),
    );
    for (id, name) in &vertices {
        let node = drawn
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n[0] == id.as_str())
            .unwrap_or_else(|| panic!("vertex {id} ({name}) is not drawn: {drawn}"));
        assert_eq!(node[1], name.as_str(), "{node}");
        let shown = node[2].as_str().unwrap().trim_end_matches('…');
        assert!(name.starts_with(shown) && !shown.is_empty(), "the node shows {shown:?} for {name:?}");
    }
    // Every vertex is connected: the window vertex has an edge from the source.
    let edges = browser.js("return document.querySelectorAll('svg#job-graph g.edge').length", json!([]));
    assert!(edges.as_u64().unwrap() >= vertices.len() as u64 - 1, "{edges} edges");

    // Its record counts change from one refresh to a later one, in the page as in the API.
    let records = "return [...document.querySelectorAll('svg#job-graph g.vertex')]
        .map(n => n.dataset.vertexId + '=' + n.dataset.writeRecords + '/' + n.dataset.readRecords
             + ':' + n.querySelector('.vertex-records').textContent).join(' | ');";
    let before = browser.wait_for(
        "records counted in the graph",
        &format!("const r = (() => {{ {records} }})(); return /out: [1-9]/.test(r) ? r : null;"),
        json!([]),
    );
    let seen = refreshes(&browser);
    let after = browser.wait_for(
        "the record counts to change after a refresh",
        &format!(
            "if (Number(document.body.dataset.refreshed) <= arguments[0]) return null;
             const r = (() => {{ {records} }})(); return r !== arguments[1] ? r : null;"
        ),
        json!([seen, before]),
    );
    println!("records before: {before}\nrecords after:  {after}");
    let source = &vertices[0].0;
    let out_of = |text: &Value| -> u64 {
        let part = text.as_str().unwrap().split(" | ").find(|p| p.starts_with(source.as_str())).unwrap();
        part.split('=').nth(1).unwrap().split('/').next().unwrap().parse().unwrap()
    };
    assert!(out_of(&after) > out_of(&before), "the source's output grew: {before} → {after}");
    browser.screenshot(&shots.join("job.png"));

    // Completed checkpoints in the checkpoints tab.
    browser.click("#job-tabs a[data-tab='checkpoints']");
    let completed = browser.wait_for(
        "a completed checkpoint in the checkpoints tab",
        "const rows = document.querySelectorAll(\"table.checkpoints tr[data-status='COMPLETED']\");
         const n = document.querySelector(\"[data-stat='cp-completed'] .stat-value\");
         return rows.length > 0 && n && Number(n.textContent) >= 1 ? rows[0].dataset.checkpointId : null;",
        json!([]),
    );
    let id: u64 = completed.as_str().unwrap().parse().unwrap();
    let stats = cluster.get(&format!("/jobs/{job}/checkpoints/details/{id}"));
    assert_eq!(stats["status"], "COMPLETED", "the page's checkpoint {id} is completed: {stats}");
    browser.screenshot(&shots.join("checkpoints.png"));

    // The configuration tab shows what the job was submitted with.
    browser.click("#job-tabs a[data-tab='configuration']");
    browser.wait_for(
        "the checkpoint interval in the configuration tab",
        "const t = document.querySelector('table.config');
         return t && t.textContent.includes('execution.checkpointing.interval');",
        json!([]),
    );

    // Cancel from the page: the button asks for a second click, then the job is CANCELED and
    // listed among the completed jobs.
    browser.click("#job-tabs a[data-tab='overview']");
    browser.click("#action-cancel");
    browser.wait_for(
        "the cancel button to ask for confirmation",
        "return document.querySelector('#action-cancel').textContent.includes('again')",
        json!([]),
    );
    assert_eq!(cluster.job_state(&job), "RUNNING", "one click does not cancel");
    browser.click("#action-cancel");
    browser.wait_for(
        "the job page to show CANCELED",
        "return document.querySelector('#job-state').dataset.state === 'CANCELED'",
        json!([]),
    );
    assert_eq!(cluster.job_state(&job), "CANCELED");
    browser.click("#nav a[data-nav='completed']");
    browser.wait_for(
        "the job among the completed jobs as CANCELED",
        "const row = document.querySelector(`#jobs tr[data-job-id='${arguments[0]}']`);
         return row && row.dataset.state === 'CANCELED' && row.textContent.includes('CANCELED');",
        json!([job]),
    );
}

#[test]
fn a_job_binary_uploaded_from_the_dashboard_runs_with_the_token_from_the_page() {
    let mut cluster = Cluster::start(&["rest.submission.token=web-secret"]);
    cluster.add_taskmanager(2);
    let browser = Browser::start(&cluster.dir.path().join("chromedriver.log"));
    let input = cluster.dir.path().join("input.txt");
    write_text(&input, 500);
    let out = cluster.dir.path().join("out");
    let binary = example("word_count");
    let args = format!("--input '{}' --mode batch --output '{}'", input.display(), out.display());

    browser.open(&cluster.url("/#/submit"));
    browser.wait_for(
        "the submission form and the token field",
        "return !!document.querySelector('#submit-form') && !document.querySelector('#token-box').hidden",
        json!([]),
    );
    browser.type_into("#submit-binary", &binary);
    browser.type_into("#submit-args", &args);
    browser.type_into("#submit-parallelism", "2");

    // Without the token the JobManager refuses the upload, and the page says why.
    browser.click("#submit-button");
    browser.wait_for(
        "the refusal without a token",
        "const s = document.querySelector('#submit-status');
         return s.classList.contains('error') && s.textContent.includes('rest.submission.token');",
        json!([]),
    );
    assert!(cluster.get("/jobs")["jobs"].as_array().unwrap().is_empty(), "nothing was submitted");

    // With it, the binary is uploaded and run, and the page opens the new job.
    browser.type_into("#token", "web-secret");
    browser.click("#submit-button");
    let job = browser.wait_for(
        "the page to open the submitted job",
        "const m = window.location.hash.match(/^#\\/jobs\\/([0-9a-f]{32})/); return m && m[1];",
        json!([]),
    );
    let job = job.as_str().unwrap().to_string();
    browser.wait_for(
        "the job page to show FINISHED",
        "return document.querySelector('#job-state') && document.querySelector('#job-state').dataset.state === 'FINISHED'",
        json!([]),
    );
    let details = cluster.get(&format!("/jobs/{job}"));
    assert_eq!(details["name"], "WordCount", "{details}");
    let config = cluster.get(&format!("/jobs/{job}/config"));
    assert_eq!(config["execution-config"]["job-parallelism"], 2, "{config}");
    // The same counts as the same program run on the local mini-cluster.
    let local = local_result(
        &binary,
        &["--input", input.to_str().unwrap(), "--mode", "batch"],
        &cluster.dir.path().join("local"),
    );
    assert_eq!(sorted_lines(&out), local);
}
