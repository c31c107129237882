//! The OpenAPI document (`src/openapi.json`, served at `GET /openapi.json`) against the REST
//! API it describes: it is well-formed, lists exactly the routes of `rest::ROUTES`, its
//! references and path parameters are consistent, and what a running JobManager answers has
//! the status codes and the shapes the document promises.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eddy_cluster::rest::{OPENAPI, ROUTES};
use serde_json::{json, Value};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is valid JSON")
}

/// The value a local reference (`#/a/b`) points to.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// Follows `$ref`s until a value that is not a reference.
fn deref<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..32 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(r) => value = resolve(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}")),
            None => return value,
        }
    }
    panic!("$ref chain too long (a cycle?)")
}

/// (method, path) → operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (key, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&key.as_str()) {
                ops.insert((key.clone(), path.clone()), op);
            }
        }
    }
    ops
}

#[test]
fn the_document_is_json_and_openapi_3() {
    let doc = doc();
    let version = doc["openapi"].as_str().expect("an openapi version string");
    assert!(version.starts_with("3."), "openapi version {version}");
    assert_eq!(doc["info"]["title"], "Eddy REST API");
    assert!(doc["info"]["version"].is_string());
    assert!(doc["paths"].is_object());
    assert!(doc["components"]["schemas"]["Error"].is_object(), "an Error schema");
}

#[test]
fn the_document_lists_exactly_the_routes() {
    let doc = doc();
    let routes: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(routes.len(), ROUTES.len(), "rest::ROUTES has duplicates");
    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().collect();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&routes).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
    assert!(unknown.is_empty(), "operations in openapi.json that rest::ROUTES does not have: {unknown:?}");
}

#[test]
fn every_ref_resolves_to_a_component() {
    fn walk<'a>(value: &'a Value, at: String, refs: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        refs.push((
                            at.clone(),
                            v.as_str().unwrap_or_else(|| panic!("$ref at {at} is not a string")),
                        ));
                    } else {
                        walk(v, format!("{at}/{k}"), refs);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{at}/{i}"), refs);
                }
            }
            _ => {}
        }
    }
    let doc = doc();
    let mut refs = Vec::new();
    walk(&doc, String::new(), &mut refs);
    assert!(!refs.is_empty());
    for (at, r) in refs {
        assert!(r.starts_with("#/components/"), "$ref {r} at {at} does not point into components");
        let parts: Vec<&str> = r.trim_start_matches("#/").split('/').collect();
        assert_eq!(parts.len(), 3, "$ref {r} at {at} is not #/components/<kind>/<name>");
        assert!(resolve(&doc, r).is_some(), "$ref {r} at {at} does not resolve");
    }
    // And the security requirements name declared schemes.
    let schemes = doc["components"]["securitySchemes"].as_object().expect("securitySchemes");
    for ((method, path), op) in operations(&doc) {
        for requirement in op["security"].as_array().into_iter().flatten() {
            for name in requirement.as_object().expect("a security requirement is an object").keys() {
                assert!(schemes.contains_key(name), "{method} {path} requires unknown scheme {name}");
            }
        }
    }
}

#[test]
fn every_path_parameter_is_declared() {
    let doc = doc();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_path: BTreeSet<String> = path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().expect("a closing brace").to_string())
            .collect();
        let declared_in = |params: &Value| -> Vec<(String, bool)> {
            params
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| deref(&doc, p))
                .filter(|p| p["in"] == "path")
                .map(|p| (p["name"].as_str().expect("a parameter name").to_string(), p["required"] == true))
                .collect()
        };
        let shared = declared_in(&item["parameters"]);
        for (method, op) in item.as_object().unwrap().iter().filter(|(k, _)| METHODS.contains(&k.as_str())) {
            let mut declared = shared.clone();
            declared.extend(declared_in(&op["parameters"]));
            for (name, required) in &declared {
                assert!(required, "{method} {path}: path parameter {name} is not required: true");
            }
            let names: BTreeSet<String> = declared.into_iter().map(|(n, _)| n).collect();
            assert_eq!(names, in_path, "{method} {path}: declared path parameters differ from the template");
        }
    }
}

#[test]
fn operations_have_success_responses_and_mutations_are_secured() {
    let doc = doc();
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    for ((method, path), op) in operations(&doc) {
        let responses =
            op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} has no 2xx response");
        for (status, response) in responses {
            let response = deref(&doc, response);
            assert!(response["description"].is_string(), "{method} {path} {status} has no description");
            if status.starts_with('4') || status.starts_with('5') {
                if let Some(schema) = response.pointer("/content/application~1json/schema") {
                    assert_eq!(schema["$ref"], "#/components/schemas/Error", "{method} {path} {status}");
                }
            }
        }
        if method != "get" {
            let secured =
                op["security"].as_array().into_iter().flatten().any(|r| r.get("bearerAuth").is_some());
            assert!(secured, "{method} {path} does not use bearerAuth");
            assert!(
                responses.contains_key("401") && responses.contains_key("403"),
                "{method} {path}: 401/403"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A running JobManager (and TaskManager) against the document.

/// Checks `value` against an OpenAPI schema (the subset the document uses). Fields an object
/// schema does not declare are errors unless it allows additional properties, so that a field
/// the handlers add without documenting it is noticed.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = deref(doc, schema);
    let mut parts = vec![schema];
    let mut i = 0;
    while i < parts.len() {
        for sub in parts[i]["allOf"].as_array().into_iter().flatten() {
            parts.push(deref(doc, sub));
        }
        i += 1;
    }
    if value.is_null() {
        if !parts.iter().any(|p| p["nullable"] == true) && parts.iter().any(|p| p.get("type").is_some()) {
            errors.push(format!("{at}: null where the schema does not allow it"));
        }
        return;
    }
    for part in &parts {
        if let Some(allowed) = part["enum"].as_array() {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        let Some(ty) = part["type"].as_str() else { continue };
        let fits = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => panic!("unknown schema type {other}"),
        };
        if !fits {
            errors.push(format!("{at}: {value} is not of type {ty}"));
            return;
        }
        if let (Some(min), Some(n)) = (part["minimum"].as_f64(), value.as_f64()) {
            if n < min {
                errors.push(format!("{at}: {n} is below the minimum {min}"));
            }
        }
        if let (Some(min), Some(items)) = (part["minItems"].as_u64(), value.as_array()) {
            if (items.len() as u64) < min {
                errors.push(format!("{at}: fewer than {min} items"));
            }
        }
        if let Some(items) = value.as_array() {
            if let Some(item_schema) = part.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(doc, item_schema, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
    }
    if let Some(fields) = value.as_object() {
        let mut properties = serde_json::Map::new();
        let mut required = BTreeSet::new();
        let mut additional: Option<&Value> = None;
        for part in &parts {
            if let Some(p) = part["properties"].as_object() {
                properties.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            required.extend(part["required"].as_array().into_iter().flatten().filter_map(Value::as_str));
            if let Some(a) = part.get("additionalProperties") {
                if a != &Value::Bool(false) {
                    additional = Some(a);
                }
            }
        }
        for name in required {
            if !fields.contains_key(name) {
                errors.push(format!("{at}: required field {name:?} is missing"));
            }
        }
        for (name, field) in fields {
            let path = format!("{at}.{name}");
            match (properties.get(name), additional) {
                (Some(s), _) => check(doc, s, field, &path, errors),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(s)) => check(doc, s, field, &path, errors),
                (None, None) => errors.push(format!("{path}: field not declared in the schema")),
            }
        }
    }
}

struct Api {
    doc: Value,
    base: String,
    agent: ureq::Agent,
    /// (method, route, status) seen, to report what the live test covered.
    seen: BTreeSet<(String, String, u16)>,
}

impl Api {
    /// Sends a request for `route` (a path of the document) to `url`, and checks that the status
    /// is documented for the operation and the body matches the documented schema.
    fn call(&mut self, method: &str, route: &str, url: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
        let full = format!("{}{url}", self.base);
        let response = match (method, body) {
            ("get", None) => self.agent.get(&full).call(),
            ("delete", None) => self.agent.delete(&full).call(),
            ("patch", None) => self.agent.patch(&full).send_empty(),
            ("post", None) => self.agent.post(&full).send_empty(),
            ("post", Some((content_type, bytes))) => {
                let mut request = self.agent.post(&full).header("Content-Type", content_type);
                if content_type == "application/octet-stream" && bytes.starts_with(b"\x7fELF") {
                    request = request.header("x-eddy-artifact-sha256", sha256_hex(&bytes));
                }
                request.send(&bytes[..])
            }
            other => panic!("no request helper for {other:?}"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.body_mut().read_to_string().expect("a response body");
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {url} → {status}: not JSON ({e}): {text}"));
        assert!(
            content_type.starts_with("application/json"),
            "{method} {url} → {status}: content type {content_type}"
        );
        self.seen.insert((method.to_string(), route.to_string(), status));

        let operation = &self.doc["paths"][route][method];
        let schema = if operation.is_object() {
            let response = operation["responses"].get(status.to_string()).unwrap_or_else(|| {
                panic!("{method} {route} answered {status}, which the document does not list: {text}")
            });
            deref(&self.doc, response)
                .pointer("/content/application~1json/schema")
                .unwrap_or_else(|| panic!("{method} {route} {status}: no application/json schema"))
                .clone()
        } else {
            // Not an operation of the document: the router's 404/405 fallbacks.
            json!({ "$ref": "#/components/schemas/Error" })
        };
        let mut errors = Vec::new();
        check(&self.doc, &schema, &value, "$", &mut errors);
        assert!(
            errors.is_empty(),
            "{method} {url} → {status} does not match the document:\n{}\n{value:#}",
            errors.join("\n")
        );
        (status, value)
    }

    fn expect(
        &mut self,
        status: u16,
        method: &str,
        route: &str,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Value {
        let (got, value) = self.call(method, route, url, body);
        assert_eq!(got, status, "{method} {url}: {value}");
        value
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_running_jobmanager_answers_as_documented() {
    use eddy_cluster::{jobmanager, options, taskmanager};
    use eddy_core::Configuration;

    let runtime = eddy_cluster::runtime("openapi-test").unwrap();
    let mut config = Configuration::new();
    config.set(options::REST_PORT.key, "0").set(options::JOBMANAGER_RPC_PORT.key, "0");
    let jm = runtime.block_on(jobmanager::start(config)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut tm_config = Configuration::new();
    tm_config
        .set(options::JOBMANAGER_RPC_PORT.key, jm.rpc_address.port().to_string())
        .set(eddy_core::config::options::TASK_SLOTS.key, "2")
        .set(options::WORKING_DIR.key, dir.path().to_str().unwrap());
    let tm = runtime.block_on(taskmanager::start(tm_config)).unwrap();

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut api =
        Api { doc: doc(), base: format!("http://{}", jm.rest_address), agent, seen: BTreeSet::new() };

    // The document is served as is.
    let served = api.expect(200, "get", "/openapi.json", "/openapi.json", None);
    assert_eq!(served, api.doc);

    wait_until("the TaskManager has registered", || {
        !api.call("get", "/taskmanagers", "/taskmanagers", None).1["taskmanagers"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let tms = api.expect(200, "get", "/taskmanagers", "/taskmanagers", None);
    let tm_id = tms["taskmanagers"][0]["id"].as_str().unwrap().to_string();
    api.expect(200, "get", "/taskmanagers/{taskmanagerid}", &format!("/taskmanagers/{tm_id}"), None);
    api.expect(404, "get", "/taskmanagers/{taskmanagerid}", "/taskmanagers/nobody", None);
    api.expect(200, "get", "/overview", "/overview", None);
    let config = api.expect(200, "get", "/config", "/config", None);
    assert_eq!(config["submission-token-required"], false, "a loopback server without a token");

    // Artifacts.
    api.expect(400, "get", "/artifacts/{artifactid}", "/artifacts/not-an-id", None);
    api.expect(404, "get", "/artifacts/{artifactid}", &format!("/artifacts/{}", "0".repeat(64)), None);
    api.expect(400, "post", "/artifacts", "/artifacts", None);
    api.expect(
        400,
        "post",
        "/artifacts",
        "/artifacts",
        Some(("application/octet-stream", b"#!/bin/sh\n".to_vec())),
    );
    // Not a runnable program, but it has the header of one, which is all the upload checks.
    let binary = b"\x7fELF: not really a program".to_vec();
    let stored = api.expect(
        201,
        "post",
        "/artifacts",
        "/artifacts",
        Some(("application/octet-stream", binary.clone())),
    );
    let artifact = stored["id"].as_str().unwrap().to_string();
    assert_eq!(artifact, sha256_hex(&binary));
    api.expect(200, "get", "/artifacts/{artifactid}", &format!("/artifacts/{artifact}"), None);
    // Running an artifact: this one is no program, so it submits no job; the answer says why.
    let run = "/artifacts/{artifactid}/run";
    let run_body = |v: Value| Some(("application/json", v.to_string().into_bytes()));
    let failed = api.expect(
        400,
        "post",
        run,
        &format!("/artifacts/{artifact}/run"),
        run_body(json!({"parallelism": 2})),
    );
    assert!(failed["errors"][0].as_str().unwrap().contains(&artifact), "{failed}");
    api.expect(
        400,
        "post",
        run,
        &format!("/artifacts/{artifact}/run"),
        run_body(json!({"entryClass": "Main"})),
    );
    api.expect(404, "post", run, &format!("/artifacts/{}/run", "0".repeat(64)), run_body(json!({})));
    api.expect(400, "post", run, "/artifacts/not-an-id/run", None);

    // Submission.
    let submission = |artifact: &str| {
        json!({
            "jobName": "openapi",
            "plan": {"type": "STREAMING", "nodes": [{"id": "v0", "parallelism": 1, "description": "Source: numbers"}]},
            "artifact": artifact,
            "programArgs": ["--flag"],
            "properties": {"restart-strategy.type": "none", "s3.secret-key": "hunter2"},
        })
    };
    let request_schema =
        api.doc["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"].clone();
    let mut errors = Vec::new();
    check(&api.doc, &request_schema, &submission(&artifact), "$", &mut errors);
    assert!(errors.is_empty(), "the test's submission does not match the document: {errors:?}");
    let json_body = |v: Value| Some(("application/json", v.to_string().into_bytes()));
    api.expect(400, "post", "/jobs", "/jobs", json_body(json!({"jobName": "x"})));
    api.expect(400, "post", "/jobs", "/jobs", json_body(submission(&"0".repeat(64))));
    let accepted = api.expect(202, "post", "/jobs", "/jobs", json_body(submission(&artifact)));
    let job = accepted["jobid"].as_str().unwrap().to_string();
    assert_eq!(accepted["jobUrl"], format!("/jobs/{job}"));

    let job_reads = |api: &mut Api| {
        api.expect(200, "get", "/jobs", "/jobs", None);
        api.expect(200, "get", "/jobs/overview", "/jobs/overview", None);
        api.expect(200, "get", "/jobs/{jobid}/plan", &format!("/jobs/{job}/plan"), None);
        api.expect(
            200,
            "get",
            "/jobs/{jobid}/vertices/{vertexid}",
            &format!("/jobs/{job}/vertices/v0"),
            None,
        );
        api.expect(200, "get", "/jobs/{jobid}/exceptions", &format!("/jobs/{job}/exceptions"), None);
        let config = api.expect(200, "get", "/jobs/{jobid}/config", &format!("/jobs/{job}/config"), None);
        assert_eq!(config["execution-config"]["user-config"]["restart-strategy.type"], "none");
        assert_eq!(
            config["execution-config"]["user-config"]["s3.secret-key"], "******",
            "secrets are hidden"
        );
        assert_eq!(config["program-args"], json!(["--flag"]));
        api.expect(200, "get", "/jobs/{jobid}", &format!("/jobs/{job}"), None)
    };
    job_reads(&mut api);
    api.expect(404, "get", "/jobs/{jobid}/vertices/{vertexid}", &format!("/jobs/{job}/vertices/nope"), None);

    // Metrics: empty for a job whose workers have not reported, the shapes as documented.
    let vertex_routes = [
        "/jobs/{jobid}/vertices/{vertexid}/metrics",
        "/jobs/{jobid}/vertices/{vertexid}/subtasks/metrics",
        "/jobs/{jobid}/vertices/{vertexid}/watermarks",
        "/jobs/{jobid}/vertices/{vertexid}/backpressure",
    ];
    for route in vertex_routes {
        api.expect(200, "get", route, &route.replace("{jobid}", &job).replace("{vertexid}", "v0"), None);
        api.expect(404, "get", route, &route.replace("{jobid}", &job).replace("{vertexid}", "nope"), None);
        api.expect(404, "get", route, &route.replace("{jobid}", "nope").replace("{vertexid}", "v0"), None);
    }
    let agg = "/jobs/{jobid}/vertices/{vertexid}/subtasks/metrics";
    let with_get = format!("/jobs/{job}/vertices/v0/subtasks/metrics?get=numRecordsIn&agg=max");
    assert_eq!(api.expect(200, "get", agg, &with_get, None), json!([]));
    let bad = format!("/jobs/{job}/vertices/v0/subtasks/metrics?get=numRecordsIn&subtasks=x");
    api.expect(400, "get", agg, &bad, None);
    let backpressure =
        api.expect(200, "get", vertex_routes[3], &format!("/jobs/{job}/vertices/v0/backpressure"), None);
    assert_eq!(backpressure["subtasks"][0]["backpressure-level"], "ok");
    let job_metrics = api.expect(
        200,
        "get",
        "/jobs/{jobid}/metrics",
        &format!("/jobs/{job}/metrics?get=numRestarts"),
        None,
    );
    assert_eq!(job_metrics, json!([{"id": "numRestarts", "value": "0"}]));
    api.expect(404, "get", "/jobs/{jobid}/metrics", "/jobs/nope/metrics", None);
    let tm_metrics = format!("/taskmanagers/{tm_id}/metrics?get=Status.Slots.Total");
    let slots = api.expect(200, "get", "/taskmanagers/{taskmanagerid}/metrics", &tm_metrics, None);
    assert_eq!(slots, json!([{"id": "Status.Slots.Total", "value": "2"}]));
    api.expect(404, "get", "/taskmanagers/{taskmanagerid}/metrics", "/taskmanagers/nobody/metrics", None);
    let jm_metrics = api.expect(200, "get", "/jobmanager/metrics", "/jobmanager/metrics", None);
    assert!(jm_metrics.as_array().unwrap().iter().any(|m| m["id"] == "Status.Memory.RSS"), "{jm_metrics}");
    for route in ["/jobs/{jobid}", "/jobs/{jobid}/plan", "/jobs/{jobid}/exceptions", "/jobs/{jobid}/config"] {
        api.expect(404, "get", route, &route.replace("{jobid}", "nope"), None);
    }
    api.expect(404, "get", "/jobs/{jobid}/vertices/{vertexid}", "/jobs/nope/vertices/v0", None);

    // Checkpoints: a job that does not checkpoint has no statistics; one that does has them
    // (empty until it is deployed, which this job's binary never is).
    let checkpoint_routes = [
        ("/jobs/{jobid}/checkpoints", "/checkpoints"),
        ("/jobs/{jobid}/checkpoints/config", "/checkpoints/config"),
        ("/jobs/{jobid}/checkpoints/details/{checkpointid}", "/checkpoints/details/1"),
        (
            "/jobs/{jobid}/checkpoints/details/{checkpointid}/subtasks/{vertexid}",
            "/checkpoints/details/1/subtasks/v0",
        ),
    ];
    for (route, suffix) in checkpoint_routes {
        api.expect(404, "get", route, &format!("/jobs/{job}{suffix}"), None);
        api.expect(404, "get", route, &format!("/jobs/nope{suffix}"), None);
    }
    let mut checkpointing = submission(&artifact);
    checkpointing["properties"]["execution.checkpointing.interval"] = json!("1 s");
    let accepted = api.expect(202, "post", "/jobs", "/jobs", json_body(checkpointing));
    let checkpointed = accepted["jobid"].as_str().unwrap().to_string();
    let stats =
        api.expect(200, "get", checkpoint_routes[0].0, &format!("/jobs/{checkpointed}/checkpoints"), None);
    assert_eq!(stats["counts"]["total"], 0);
    assert_eq!(stats["latest"]["completed"], Value::Null);
    let config = api.expect(
        200,
        "get",
        checkpoint_routes[1].0,
        &format!("/jobs/{checkpointed}/checkpoints/config"),
        None,
    );
    assert_eq!((&config["interval"], &config["mode"]), (&json!(1000), &json!("exactly_once")));
    for (route, suffix) in &checkpoint_routes[2..] {
        api.expect(404, "get", route, &format!("/jobs/{checkpointed}{suffix}"), None);
        let not_a_number = suffix.replace("details/1", "details/latest");
        api.expect(400, "get", route, &format!("/jobs/{checkpointed}{not_a_number}"), None);
    }
    api.call("patch", "/jobs/{jobid}", &format!("/jobs/{checkpointed}?mode=cancel"), None);

    // Savepoints: refused for unknown jobs, bad bodies and jobs that do not run (this one's
    // binary never deploys); unknown operations are 404. A submission from a savepoint that
    // cannot be read is refused.
    let trigger = "/jobs/{jobid}/savepoints";
    let status_route = "/jobs/{jobid}/savepoints/{triggerid}";
    let stop = "/jobs/{jobid}/stop";
    api.expect(404, "post", trigger, "/jobs/nope/savepoints", json_body(json!({})));
    api.expect(404, "post", stop, "/jobs/nope/stop", None);
    api.expect(400, "post", trigger, &format!("/jobs/{job}/savepoints"), json_body(json!({"cancel": true})));
    api.expect(400, "post", stop, &format!("/jobs/{job}/stop"), json_body(json!({"drain": "yes"})));
    let body = json!({"target-directory": "/tmp/savepoints", "cancel-job": false, "formatType": "CANONICAL"});
    let refused =
        api.expect(409, "post", trigger, &format!("/jobs/{checkpointed}/savepoints"), json_body(body));
    assert!(refused["errors"][0].as_str().unwrap().contains(&checkpointed), "{refused}");
    api.expect(409, "post", stop, &format!("/jobs/{checkpointed}/stop"), None);
    api.expect(404, "get", status_route, &format!("/jobs/{job}/savepoints/0123"), None);
    api.expect(404, "get", status_route, "/jobs/nope/savepoints/0123", None);
    let mut from_savepoint = submission(&artifact);
    from_savepoint["savepointPath"] = json!("/no/such/savepoint");
    from_savepoint["allowNonRestoredState"] = json!(true);
    let mut errors = Vec::new();
    check(&api.doc, &request_schema, &from_savepoint, "$", &mut errors);
    assert!(errors.is_empty(), "the submission does not match the document: {errors:?}");
    let refused = api.expect(400, "post", "/jobs", "/jobs", json_body(from_savepoint));
    assert!(refused["errors"][0].as_str().unwrap().contains("/no/such/savepoint"), "{refused}");

    // Cancellation: a bad mode, an unknown job, then the job (which may already have failed,
    // its binary being no program), and again once it has ended.
    api.expect(400, "patch", "/jobs/{jobid}", &format!("/jobs/{job}?mode=stop"), None);
    api.expect(404, "patch", "/jobs/{jobid}", "/jobs/nope?mode=cancel", None);
    let (status, _) = api.call("patch", "/jobs/{jobid}", &format!("/jobs/{job}?mode=cancel"), None);
    assert!(status == 202 || status == 409, "cancel answered {status}");
    wait_until("the job has ended", || {
        let state = api.call("get", "/jobs/{jobid}", &format!("/jobs/{job}"), None).1["state"].clone();
        ["CANCELED", "FAILED", "FINISHED"].iter().any(|s| state == *s)
    });
    let ended = job_reads(&mut api);
    assert!(ended["end-time"].as_i64().unwrap() > 0);
    api.expect(409, "patch", "/jobs/{jobid}", &format!("/jobs/{job}"), None);

    // The router's fallbacks answer with the Error shape too.
    api.expect(404, "get", "/no/such/route", "/no/such/route", None);
    api.expect(405, "delete", "/overview", "/overview", None);

    let covered: BTreeSet<(String, String)> =
        api.seen.iter().map(|(m, r, _)| (m.clone(), r.clone())).collect();
    for (method, route) in ROUTES {
        assert!(
            covered.contains(&(method.to_string(), route.to_string())),
            "{method} {route} was not exercised"
        );
    }

    runtime.block_on(async {
        tm.shutdown().await;
        jm.shutdown().await;
    });
}
