//! Restart strategies on the local mini-cluster: jobs that fail, restart from scratch and
//! finish, jobs whose restarts run out, and cancellation while a job waits to restart.
//!
//! Delays are configured tiny (a few ms) so the tests stay fast; every wait is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use eddy::prelude::*;
use eddy::Configuration;

/// Generous: a healthy job here ends in well under a second.
const JOB_LIMIT: Duration = Duration::from_secs(30);

fn env(pairs: &[(&str, &str)]) -> StreamExecutionEnvironment {
    let mut config = Configuration::new();
    for (k, v) in pairs {
        config.set(*k, *v);
    }
    StreamExecutionEnvironment::with_configuration(config).with_parallelism(2)
}

fn fixed_delay(attempts: &str) -> StreamExecutionEnvironment {
    env(&[
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", attempts),
        ("restart-strategy.fixed-delay.delay", "10 ms"),
    ])
}

/// Waits for the job to end, at most [`JOB_LIMIT`]; cancels it and fails the test otherwise.
fn await_end(client: &JobClient) -> JobStatus {
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    status
}

/// Polls until `condition` holds, at most [`JOB_LIMIT`].
fn await_condition(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + JOB_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Tags each record with the attempt that produced it; fails on `fail_on` in the attempts
/// before `succeed_from`; counts the records it sees in `seen`.
#[derive(Clone)]
struct FailingAttempts {
    fail_on: i64,
    succeed_from: usize,
    attempt: usize,
    highest_attempt: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
}

impl FailingAttempts {
    fn new(fail_on: i64, succeed_from: usize) -> Self {
        FailingAttempts {
            fail_on,
            succeed_from,
            attempt: 0,
            highest_attempt: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl ProcessFunction<i64, (usize, i64)> for FailingAttempts {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.attempt = ctx.attempt_number();
        self.highest_attempt.fetch_max(self.attempt, Ordering::SeqCst);
        Ok(())
    }

    fn process_element(&mut self, v: i64, _: &mut Context, out: &mut Collector<(usize, i64)>) -> Result<()> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if v == self.fail_on && self.attempt < self.succeed_from {
            return Err(EddyError::user(format!("bad record {v} in attempt {}", self.attempt)));
        }
        out.collect((self.attempt, v));
        Ok(())
    }
}

fn records_of_attempt(records: &[(usize, i64)], attempt: usize) -> Vec<i64> {
    let mut of_attempt: Vec<i64> = records.iter().filter(|(a, _)| *a == attempt).map(|(_, v)| *v).collect();
    of_attempt.sort();
    of_attempt
}

#[test]
fn a_job_that_fails_on_its_first_attempt_restarts_and_finishes() {
    let env = fixed_delay("2");
    let collected = env.from_sequence(0, 999).process(FailingAttempts::new(500, 1)).collect_to_vec();
    let client = env.execute_async("fails once").unwrap();
    assert_eq!(await_end(&client), JobStatus::Finished);
    client.wait().unwrap();
    assert_eq!(client.restarts(), 1);

    // The collect sink keeps what the failed attempt wrote too (no exactly-once without
    // checkpoints), so each attempt's records are checked apart.
    let records = collected.take();
    assert_eq!(records_of_attempt(&records, 1), (0..=999).collect::<Vec<_>>(), "the restarted attempt");
    let first = records_of_attempt(&records, 0);
    assert!(!first.contains(&500), "the failing record was not emitted");
    assert!(first.windows(2).all(|w| w[0] < w[1]) && first.iter().all(|v| (0..=999).contains(v)));
    assert!(records.iter().all(|(a, _)| *a <= 1), "no third attempt");
}

#[test]
fn exhausted_restarts_fail_with_the_root_cause_and_the_restart_count() {
    let env = fixed_delay("3");
    let f = FailingAttempts::new(17, usize::MAX);
    let highest_attempt = f.highest_attempt.clone();
    env.from_sequence(0, 99).process(f).name("Validator").collect_to_vec();
    let client = env.execute_async("always fails").unwrap();
    assert_eq!(await_end(&client), JobStatus::Failed);
    let err = client.wait().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad record 17 in attempt 3"), "the last root cause: {text}");
    assert!(text.contains("(after 3 restarts; restart-strategy fixed-delay)"), "{text}");
    assert!(matches!(&err, EddyError::Task { operator, .. } if operator == "Validator"), "{err:?}");
    assert_eq!(client.restarts(), 3);
    assert_eq!(highest_attempt.load(Ordering::SeqCst), 3);
}

#[test]
fn without_a_restart_strategy_the_first_failure_fails_the_job() {
    for pairs in [&[][..], &[("restart-strategy.type", "none")][..], &[("restart-strategy.type", "off")][..]]
    {
        let env = env(pairs);
        let f = FailingAttempts::new(17, usize::MAX);
        let highest_attempt = f.highest_attempt.clone();
        env.from_sequence(0, 99).process(f).collect_to_vec();
        let client = env.execute_async("no restarts").unwrap();
        assert_eq!(await_end(&client), JobStatus::Failed, "{pairs:?}");
        let text = client.wait().unwrap_err().to_string();
        assert!(text.contains("bad record 17 in attempt 0"), "{text}");
        assert!(!text.contains("restart-strategy"), "no annotation without a strategy: {text}");
        assert_eq!(client.restarts(), 0);
        assert_eq!(highest_attempt.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn failure_rate_gives_up_when_failures_come_faster_than_allowed() {
    let env = env(&[
        ("restart-strategy.type", "failure-rate"),
        ("restart-strategy.failure-rate.max-failures-per-interval", "3"),
        ("restart-strategy.failure-rate.failure-rate-interval", "1 min"),
        ("restart-strategy.failure-rate.delay", "1 ms"),
    ]);
    env.from_sequence(0, 99).process(FailingAttempts::new(17, usize::MAX)).collect_to_vec();
    let client = env.execute_async("failing fast").unwrap();
    assert_eq!(await_end(&client), JobStatus::Failed);
    let text = client.wait().unwrap_err().to_string();
    // Flink's rule: the third failure within the interval is one too many.
    assert_eq!(client.restarts(), 2);
    assert!(text.contains("bad record 17 in attempt 2"), "{text}");
    assert!(text.contains("(after 2 restarts; restart-strategy failure-rate)"), "{text}");
}

#[test]
fn exponential_delay_restarts_until_the_job_succeeds() {
    let env = env(&[
        ("restart-strategy.type", "exponential-delay"),
        ("restart-strategy.exponential-delay.initial-backoff", "1 ms"),
        ("restart-strategy.exponential-delay.max-backoff", "20 ms"),
    ]);
    let collected = env.from_sequence(0, 99).process(FailingAttempts::new(42, 3)).collect_to_vec();
    let client = env.execute_async("fails thrice").unwrap();
    assert_eq!(await_end(&client), JobStatus::Finished);
    client.wait().unwrap();
    assert_eq!(client.restarts(), 3);
    assert_eq!(records_of_attempt(&collected.take(), 3), (0..=99).collect::<Vec<_>>());
}

#[test]
fn cancel_during_the_backoff_ends_the_job_canceled_at_once() {
    let env = env(&[
        ("restart-strategy.type", "fixed-delay"),
        ("restart-strategy.fixed-delay.attempts", "5"),
        ("restart-strategy.fixed-delay.delay", "1 h"),
    ]);
    let f = FailingAttempts::new(17, usize::MAX);
    let highest_attempt = f.highest_attempt.clone();
    env.from_sequence(0, 99).process(f).collect_to_vec();
    let client = env.execute_async("waits an hour").unwrap();
    await_condition("RESTARTING", || client.status() == JobStatus::Restarting);
    assert_eq!(JobStatus::Restarting.as_str(), "RESTARTING");

    let cancelled_at = Instant::now();
    client.cancel();
    assert_eq!(client.wait_timeout(Duration::from_secs(10)), JobStatus::Canceled);
    assert!(matches!(client.wait(), Err(EddyError::Cancelled(_))));
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
    assert_eq!(client.restarts(), 0, "the restart never happened");
    assert_eq!(highest_attempt.load(Ordering::SeqCst), 0);
}

#[test]
fn cancel_during_a_restarted_attempt_ends_the_job_canceled() {
    let env = fixed_delay("1");
    // Attempt 0 fails at once; attempt 1 runs on through a long stream until cancelled.
    let f = FailingAttempts::new(0, 1);
    let (highest_attempt, seen) = (f.highest_attempt.clone(), f.seen.clone());
    env.from_sequence(0, i64::MAX).process(f).collect_to_vec();
    let client = env.execute_async("cancelled after a restart").unwrap();
    await_condition("the restarted attempt to process records", || {
        highest_attempt.load(Ordering::SeqCst) == 1 && seen.load(Ordering::SeqCst) > 1000
    });
    assert_eq!(client.status(), JobStatus::Running);
    client.cancel();
    assert_eq!(client.wait_timeout(Duration::from_secs(10)), JobStatus::Canceled);
    assert!(matches!(client.wait(), Err(EddyError::Cancelled(_))));
    assert_eq!(client.restarts(), 1);
}

#[test]
fn bad_restart_configuration_is_reported_by_execute() {
    let cases = [
        (vec![("restart-strategy.type", "sometimes")], "restart-strategy.type", "sometimes"),
        (
            vec![
                ("restart-strategy.type", "fixed-delay"),
                ("restart-strategy.fixed-delay.attempts", "three"),
            ],
            "restart-strategy.fixed-delay.attempts",
            "three",
        ),
        (
            vec![("restart-strategy.type", "fixed-delay"), ("restart-strategy.fixed-delay.delay", "soon")],
            "restart-strategy.fixed-delay.delay",
            "soon",
        ),
        (
            vec![
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.backoff-multiplier", "x2"),
            ],
            "restart-strategy.exponential-delay.backoff-multiplier",
            "x2",
        ),
    ];
    for (pairs, key, value) in cases {
        let env = env(&pairs);
        env.from_sequence(0, 9).collect_to_vec();
        match env.execute("misconfigured") {
            Err(EddyError::Config { key: k, value: v, .. }) => {
                assert_eq!((k.as_str(), v.as_str()), (key, value))
            }
            other => panic!("expected a configuration error for {key}, got {other:?}"),
        }
    }
}
