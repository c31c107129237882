//! Restart strategies: whether, and after how long, a failed job starts again.
//!
//! A [`RestartStrategy`] is read from configuration with Flink's keys (`restart-strategy.type`
//! and the `restart-strategy.<type>.*` options). For one job it becomes a
//! [`RestartBackoffTimeStrategy`], the object Flink's scheduler asks after every failure:
//!
//! 1. [`notify_failure`](RestartBackoffTimeStrategy::notify_failure) with the time of the failure;
//! 2. [`can_restart`](RestartBackoffTimeStrategy::can_restart): may the job run again?
//! 3. [`backoff`](RestartBackoffTimeStrategy::backoff): how long to wait before it does.
//!
//! A restart on the local mini-cluster restarts the whole job: from the latest completed
//! checkpoint when the job checkpoints (see [`crate::checkpoint`]), otherwise from scratch, so
//! bounded sources are read again from their beginning and a sink with side effects sees the
//! output of the failed attempt again.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use eddy_core::Configuration;
//! use eddy_runtime::restart::RestartStrategy;
//!
//! let mut config = Configuration::new();
//! config.set("restart-strategy.type", "fixed-delay");
//! config.set("restart-strategy.fixed-delay.attempts", "2");
//! config.set("restart-strategy.fixed-delay.delay", "10 ms");
//! let strategy = RestartStrategy::from_configuration(&config).unwrap();
//!
//! let mut backoff = strategy.backoff_time_strategy();
//! for _ in 0..2 {
//!     backoff.notify_failure(Instant::now());
//!     assert!(backoff.can_restart());
//!     assert_eq!(backoff.backoff(), Duration::from_millis(10));
//! }
//! backoff.notify_failure(Instant::now());
//! assert!(!backoff.can_restart());
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use eddy_core::config::options;
use eddy_core::random::{random_seed, SplitMix64};
use eddy_core::{Configuration, EddyError, Result};

/// How a failed job is restarted (Flink's `restart-strategy.type` and its options).
#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    /// The first failure fails the job (`none`, `off`, `disable`).
    None,
    /// Up to `attempts` restarts, each after `delay`.
    FixedDelay { attempts: usize, delay: Duration },
    /// Waits that grow by `backoff_multiplier` from `initial_backoff` up to `max_backoff`, with
    /// a random `jitter_factor` share added or taken away; back to the initial wait after
    /// `reset_backoff_threshold` without a failure. `attempts_before_reset_backoff`: `None` is
    /// unlimited.
    ExponentialDelay {
        initial_backoff: Duration,
        max_backoff: Duration,
        backoff_multiplier: f64,
        reset_backoff_threshold: Duration,
        jitter_factor: f64,
        attempts_before_reset_backoff: Option<usize>,
    },
    /// Restarts after `delay` until `max_failures_per_interval` failures fall within one
    /// `failure_rate_interval`.
    FailureRate { max_failures_per_interval: usize, failure_rate_interval: Duration, delay: Duration },
}

impl RestartStrategy {
    /// The strategy `config` asks for.
    ///
    /// Without `restart-strategy.type` this is what current Flink picks: [`RestartStrategy::None`]
    /// while checkpointing is off, `exponential-delay` with its default options once
    /// `execution.checkpointing.interval` is set.
    ///
    /// An unknown type or a bad option value is an [`EddyError::Config`] naming the key and
    /// the value.
    pub fn from_configuration(config: &Configuration) -> Result<Self> {
        let Some(raw) = config.get_optional(&options::RESTART_STRATEGY_TYPE)? else {
            return match config.get_optional(&options::CHECKPOINTING_INTERVAL)? {
                Some(_) => Self::exponential_delay(config),
                None => Ok(RestartStrategy::None),
            };
        };
        let name = raw.trim().to_ascii_lowercase();
        match name.as_str() {
            "none" | "off" | "disable" => Ok(RestartStrategy::None),
            "fixed-delay" | "fixeddelay" => Ok(RestartStrategy::FixedDelay {
                attempts: config.get(&options::FIXED_DELAY_ATTEMPTS)?,
                delay: config.get(&options::FIXED_DELAY_DELAY)?,
            }),
            "exponential-delay" | "exponentialdelay" => Self::exponential_delay(config),
            "failure-rate" | "failurerate" => Ok(RestartStrategy::FailureRate {
                max_failures_per_interval: config.get(&options::FAILURE_RATE_MAX_FAILURES_PER_INTERVAL)?,
                failure_rate_interval: config.get(&options::FAILURE_RATE_INTERVAL)?,
                delay: config.get(&options::FAILURE_RATE_DELAY)?,
            }),
            _ => Err(EddyError::Config {
                key: options::RESTART_STRATEGY_TYPE.key.to_string(),
                value: raw,
                reason: "expected none, off, disable, fixed-delay, exponential-delay or failure-rate"
                    .to_string(),
            }),
        }
    }

    fn exponential_delay(config: &Configuration) -> Result<Self> {
        let initial_backoff = config.get(&options::EXPONENTIAL_DELAY_INITIAL_BACKOFF)?;
        let max_backoff = config.get(&options::EXPONENTIAL_DELAY_MAX_BACKOFF)?;
        if max_backoff < initial_backoff {
            return Err(EddyError::Config {
                key: options::EXPONENTIAL_DELAY_MAX_BACKOFF.key.to_string(),
                value: config.get_raw(options::EXPONENTIAL_DELAY_MAX_BACKOFF.key).unwrap_or("").to_string(),
                reason: format!(
                    "must not be less than {} ({initial_backoff:?})",
                    options::EXPONENTIAL_DELAY_INITIAL_BACKOFF.key
                ),
            });
        }
        Ok(RestartStrategy::ExponentialDelay {
            initial_backoff,
            max_backoff,
            backoff_multiplier: config.get(&options::EXPONENTIAL_DELAY_BACKOFF_MULTIPLIER)?,
            reset_backoff_threshold: config.get(&options::EXPONENTIAL_DELAY_RESET_BACKOFF_THRESHOLD)?,
            jitter_factor: config.get(&options::EXPONENTIAL_DELAY_JITTER_FACTOR)?,
            attempts_before_reset_backoff: config
                .get_optional(&options::EXPONENTIAL_DELAY_ATTEMPTS_BEFORE_RESET_BACKOFF)?,
        })
    }

    /// Flink's name of the strategy: `none`, `fixed-delay`, `exponential-delay`, `failure-rate`.
    pub fn name(&self) -> &'static str {
        match self {
            RestartStrategy::None => "none",
            RestartStrategy::FixedDelay { .. } => "fixed-delay",
            RestartStrategy::ExponentialDelay { .. } => "exponential-delay",
            RestartStrategy::FailureRate { .. } => "failure-rate",
        }
    }

    /// The per-job state of this strategy; the jitter of `exponential-delay` is seeded from
    /// the time and a process-wide random state.
    pub fn backoff_time_strategy(&self) -> Box<dyn RestartBackoffTimeStrategy> {
        self.backoff_time_strategy_with_seed(random_seed())
    }

    /// As [`backoff_time_strategy`](Self::backoff_time_strategy), with the jitter drawn from a
    /// generator seeded with `seed`, so a sequence of waits can be reproduced.
    pub fn backoff_time_strategy_with_seed(&self, seed: u64) -> Box<dyn RestartBackoffTimeStrategy> {
        match *self {
            RestartStrategy::None => Box::new(NoRestart),
            RestartStrategy::FixedDelay { attempts, delay } => {
                Box::new(FixedDelayBackoff { attempts, delay, failures: 0 })
            }
            RestartStrategy::ExponentialDelay {
                initial_backoff,
                max_backoff,
                backoff_multiplier,
                reset_backoff_threshold,
                jitter_factor,
                attempts_before_reset_backoff,
            } => Box::new(ExponentialDelayBackoff {
                initial_backoff,
                max_backoff,
                backoff_multiplier,
                reset_backoff_threshold,
                jitter_factor,
                attempts_before_reset_backoff: attempts_before_reset_backoff.unwrap_or(usize::MAX),
                current_backoff: initial_backoff,
                next_restart: None,
                attempts: 0,
                random: SplitMix64::new(seed),
            }),
            RestartStrategy::FailureRate { max_failures_per_interval, failure_rate_interval, delay } => {
                Box::new(FailureRateBackoff {
                    max_failures: max_failures_per_interval,
                    interval: failure_rate_interval,
                    delay,
                    failures: VecDeque::with_capacity(max_failures_per_interval),
                })
            }
        }
    }
}

impl fmt::Display for RestartStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the job master asks after each failure (Flink's `RestartBackoffTimeStrategy`).
pub trait RestartBackoffTimeStrategy: Send {
    /// Records a failure that happened at `now`.
    fn notify_failure(&mut self, now: Instant);
    /// Whether the job may restart after the failures recorded so far.
    fn can_restart(&self) -> bool;
    /// How long to wait before the restart.
    fn backoff(&self) -> Duration;
}

struct NoRestart;

impl RestartBackoffTimeStrategy for NoRestart {
    fn notify_failure(&mut self, _now: Instant) {}

    fn can_restart(&self) -> bool {
        false
    }

    fn backoff(&self) -> Duration {
        Duration::ZERO
    }
}

struct FixedDelayBackoff {
    attempts: usize,
    delay: Duration,
    failures: usize,
}

impl RestartBackoffTimeStrategy for FixedDelayBackoff {
    fn notify_failure(&mut self, _now: Instant) {
        self.failures += 1;
    }

    fn can_restart(&self) -> bool {
        self.failures <= self.attempts
    }

    fn backoff(&self) -> Duration {
        self.delay
    }
}

/// Flink's failure-rate rule: the last `max_failures` failure times are kept, and once there
/// are that many, a restart is allowed only if the oldest lies more than `interval` before
/// the newest. So `max_failures` = 1 allows no restart within the interval, and `n` allows
/// `n - 1`.
struct FailureRateBackoff {
    max_failures: usize,
    interval: Duration,
    delay: Duration,
    failures: VecDeque<Instant>,
}

impl RestartBackoffTimeStrategy for FailureRateBackoff {
    fn notify_failure(&mut self, now: Instant) {
        if self.failures.len() >= self.max_failures {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
    }

    fn can_restart(&self) -> bool {
        match (self.failures.front(), self.failures.back()) {
            (Some(&oldest), Some(&newest)) if self.failures.len() >= self.max_failures => {
                newest.duration_since(oldest) > self.interval
            }
            _ => true,
        }
    }

    fn backoff(&self) -> Duration {
        self.delay
    }
}

/// Flink's exponential-delay rule: the first failure waits the initial backoff; each further
/// failure multiplies the wait (while it is below the maximum) and adds a jitter drawn from
/// `[-wait·jitter, +wait·jitter]`, clamped to `[initial, max]`. A failure that comes
/// `reset_backoff_threshold` or more after the previous restart starts over at the initial
/// backoff with a fresh attempt count.
struct ExponentialDelayBackoff {
    initial_backoff: Duration,
    max_backoff: Duration,
    backoff_multiplier: f64,
    reset_backoff_threshold: Duration,
    jitter_factor: f64,
    attempts_before_reset_backoff: usize,
    current_backoff: Duration,
    /// When the last restart was due.
    next_restart: Option<Instant>,
    attempts: usize,
    random: SplitMix64,
}

impl ExponentialDelayBackoff {
    fn increase_backoff(&mut self) {
        let mut millis = self.current_backoff.as_millis() as f64;
        let max = self.max_backoff.as_millis() as f64;
        if millis < max {
            millis *= self.backoff_multiplier;
        }
        let jittered = millis + self.jitter_millis(millis);
        let clamped = jittered.min(max).max(self.initial_backoff.as_millis() as f64);
        self.current_backoff = Duration::from_millis(clamped as u64);
    }

    fn jitter_millis(&mut self, millis: f64) -> f64 {
        let offset = (millis * self.jitter_factor) as i64;
        if offset <= 0 {
            return 0.0;
        }
        let span = (2 * offset + 1) as u64;
        (self.random.next_u64() % span) as f64 - offset as f64
    }
}

impl RestartBackoffTimeStrategy for ExponentialDelayBackoff {
    fn notify_failure(&mut self, now: Instant) {
        match self.next_restart {
            Some(last) if now.saturating_duration_since(last) < self.reset_backoff_threshold => {
                self.increase_backoff();
            }
            _ => {
                self.current_backoff = self.initial_backoff;
                self.attempts = 0;
            }
        }
        self.attempts = self.attempts.saturating_add(1);
        self.next_restart = Some(now + self.current_backoff);
    }

    fn can_restart(&self) -> bool {
        self.attempts <= self.attempts_before_reset_backoff
    }

    fn backoff(&self) -> Duration {
        self.current_backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Configuration {
        let mut c = Configuration::new();
        for (k, v) in pairs {
            c.set(*k, *v);
        }
        c
    }

    fn strategy(pairs: &[(&str, &str)]) -> RestartStrategy {
        RestartStrategy::from_configuration(&config(pairs)).unwrap()
    }

    fn config_error(pairs: &[(&str, &str)]) -> (String, String) {
        match RestartStrategy::from_configuration(&config(pairs)) {
            Err(EddyError::Config { key, value, .. }) => (key, value),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The waits after `n` failures, each `gap` after the restart before it.
    fn backoffs(b: &mut dyn RestartBackoffTimeStrategy, n: usize, gap: Duration) -> Vec<u64> {
        let mut now = Instant::now();
        let mut out = Vec::new();
        for _ in 0..n {
            b.notify_failure(now);
            out.push(b.backoff().as_millis() as u64);
            now += b.backoff() + gap;
        }
        out
    }

    #[test]
    fn unset_type_means_none() {
        assert_eq!(strategy(&[]), RestartStrategy::None);
        for name in ["none", "off", "disable", "NONE"] {
            assert_eq!(strategy(&[("restart-strategy.type", name)]), RestartStrategy::None);
        }
        let mut b = RestartStrategy::None.backoff_time_strategy();
        b.notify_failure(Instant::now());
        assert!(!b.can_restart());
    }

    #[test]
    fn with_checkpointing_an_unset_type_means_exponential_delay() {
        let s = strategy(&[("execution.checkpointing.interval", "1 s")]);
        assert_eq!(s.name(), "exponential-delay");
        let s = strategy(&[("execution.checkpointing.interval", "1 s"), ("restart-strategy.type", "none")]);
        assert_eq!(s, RestartStrategy::None);
    }

    #[test]
    fn flink_defaults() {
        assert_eq!(
            strategy(&[("restart-strategy.type", "fixed-delay")]),
            RestartStrategy::FixedDelay { attempts: 1, delay: Duration::from_secs(1) }
        );
        assert_eq!(
            strategy(&[("restart-strategy.type", "exponential-delay")]),
            RestartStrategy::ExponentialDelay {
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(300),
                backoff_multiplier: 2.0,
                reset_backoff_threshold: Duration::from_secs(3600),
                jitter_factor: 0.1,
                attempts_before_reset_backoff: None,
            }
        );
        assert_eq!(
            strategy(&[("restart-strategy.type", "failure-rate")]),
            RestartStrategy::FailureRate {
                max_failures_per_interval: 1,
                failure_rate_interval: Duration::from_secs(60),
                delay: Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn config_errors_name_key_and_value() {
        assert_eq!(
            config_error(&[("restart-strategy.type", "sometimes")]),
            ("restart-strategy.type".into(), "sometimes".into())
        );
        assert_eq!(
            config_error(&[
                ("restart-strategy.type", "fixed-delay"),
                ("restart-strategy.fixed-delay.attempts", "-1")
            ]),
            ("restart-strategy.fixed-delay.attempts".into(), "-1".into())
        );
        assert_eq!(
            config_error(&[
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.jitter-factor", "1.5")
            ]),
            ("restart-strategy.exponential-delay.jitter-factor".into(), "1.5".into())
        );
        assert_eq!(
            config_error(&[
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.backoff-multiplier", "0.5")
            ]),
            ("restart-strategy.exponential-delay.backoff-multiplier".into(), "0.5".into())
        );
        assert_eq!(
            config_error(&[
                ("restart-strategy.type", "exponential-delay"),
                ("restart-strategy.exponential-delay.max-backoff", "10 ms")
            ]),
            ("restart-strategy.exponential-delay.max-backoff".into(), "10 ms".into())
        );
        assert_eq!(
            config_error(&[
                ("restart-strategy.type", "failure-rate"),
                ("restart-strategy.failure-rate.max-failures-per-interval", "0")
            ]),
            ("restart-strategy.failure-rate.max-failures-per-interval".into(), "0".into())
        );
    }

    #[test]
    fn fixed_delay_allows_its_attempts() {
        let s = RestartStrategy::FixedDelay { attempts: 3, delay: ms(7) };
        let mut b = s.backoff_time_strategy();
        for _ in 0..3 {
            b.notify_failure(Instant::now());
            assert!(b.can_restart());
            assert_eq!(b.backoff(), ms(7));
        }
        b.notify_failure(Instant::now());
        assert!(!b.can_restart());
    }

    #[test]
    fn failure_rate_gives_up_when_failures_come_too_fast() {
        let s = RestartStrategy::FailureRate {
            max_failures_per_interval: 3,
            failure_rate_interval: ms(1000),
            delay: ms(5),
        };
        let mut b = s.backoff_time_strategy();
        let t0 = Instant::now();
        b.notify_failure(t0);
        assert!(b.can_restart());
        b.notify_failure(t0 + ms(100));
        assert!(b.can_restart());
        b.notify_failure(t0 + ms(200));
        assert!(!b.can_restart(), "3 failures within 1 s");
        assert_eq!(b.backoff(), ms(5));

        // Spread out, the oldest leaves the window.
        let mut b = s.backoff_time_strategy();
        for i in 0..10 {
            b.notify_failure(t0 + ms(600 * i));
            assert!(b.can_restart(), "failure {i}");
        }
    }

    #[test]
    fn failure_rate_of_one_allows_no_restart_within_the_interval() {
        let s = RestartStrategy::FailureRate {
            max_failures_per_interval: 1,
            failure_rate_interval: ms(1000),
            delay: ms(5),
        };
        let mut b = s.backoff_time_strategy();
        b.notify_failure(Instant::now());
        assert!(!b.can_restart());
    }

    fn exponential(jitter_factor: f64, attempts: Option<usize>) -> RestartStrategy {
        RestartStrategy::ExponentialDelay {
            initial_backoff: ms(100),
            max_backoff: ms(1000),
            backoff_multiplier: 2.0,
            reset_backoff_threshold: Duration::from_secs(3600),
            jitter_factor,
            attempts_before_reset_backoff: attempts,
        }
    }

    #[test]
    fn exponential_delay_without_jitter_doubles_up_to_the_maximum() {
        let mut b = exponential(0.0, None).backoff_time_strategy();
        assert_eq!(backoffs(b.as_mut(), 7, ms(1)), vec![100, 200, 400, 800, 1000, 1000, 1000]);
        assert!(b.can_restart(), "unlimited attempts by default");
    }

    #[test]
    fn exponential_delay_jitter_is_bounded_and_reproducible_with_a_seed() {
        let s = exponential(0.1, None);
        let a = backoffs(s.backoff_time_strategy_with_seed(42).as_mut(), 8, ms(1));
        let b = backoffs(s.backoff_time_strategy_with_seed(42).as_mut(), 8, ms(1));
        assert_eq!(a, b, "the same seed gives the same waits");
        assert_eq!(a[0], 100, "the first wait has no jitter");
        let mut previous = 100.0_f64;
        for &wait in &a[1..] {
            let expected_base = if previous < 1000.0 { previous * 2.0 } else { previous };
            let low = (expected_base * 0.9).floor().clamp(100.0, 1000.0);
            let high = (expected_base * 1.1).ceil().min(1000.0);
            assert!((low..=high).contains(&(wait as f64)), "{wait} outside [{low}, {high}] in {a:?}");
            previous = wait as f64;
        }
        let other = backoffs(s.backoff_time_strategy_with_seed(7).as_mut(), 8, ms(1));
        assert_ne!(a, other, "another seed gives other waits");
    }

    #[test]
    fn exponential_delay_resets_after_a_stable_run() {
        let mut s = exponential(0.0, None);
        if let RestartStrategy::ExponentialDelay { reset_backoff_threshold, .. } = &mut s {
            *reset_backoff_threshold = ms(500);
        }
        let mut b = s.backoff_time_strategy();
        let t0 = Instant::now();
        b.notify_failure(t0);
        b.notify_failure(t0 + ms(150));
        assert_eq!(b.backoff(), ms(200));
        // Restart due at 350 ms; running stably until 1 s.
        b.notify_failure(t0 + ms(1000));
        assert_eq!(b.backoff(), ms(100));
    }

    #[test]
    fn exponential_delay_attempts_before_reset() {
        let mut b = exponential(0.0, Some(2)).backoff_time_strategy();
        let t0 = Instant::now();
        b.notify_failure(t0);
        assert!(b.can_restart());
        b.notify_failure(t0 + ms(110));
        assert!(b.can_restart());
        b.notify_failure(t0 + ms(320));
        assert!(!b.can_restart());
    }
}
