//! Metrics: what every subtask and operator counts while it runs, the metrics functions
//! register themselves, and the per-second views over them.
//!
//! Each subtask owns one [`TaskMetrics`]: its records and bytes in and out, the time it spent
//! idle (waiting for input) and backpressured (waiting for room in an output channel), and
//! its current input and output watermarks. Each operator of the subtask's chain owns one
//! [`MetricGroup`], reachable from a function's `RuntimeContext`: the operator's records in
//! and out, its watermarks, and the [`Counter`]s, [`Gauge`]s, [`Meter`]s and [`Histogram`]s
//! registered on it.
//!
//! The hot path only adds to relaxed atomics, once per batch (a user counter once per call),
//! and reads the clock once per wait, never per record. Rates are not computed there: one
//! thread per process, the view updater, samples every live subtask's counters once a second
//! into a sliding window (Flink's `MeterView`), from which `numRecordsInPerSecond` and the
//! others are read: record and byte rates over the last 60 s, busy, idle and backpressured
//! time per second over the last 5 s.
//!
//! Built without the `metrics` feature, the built-in per-batch counters and wait timers are
//! compiled out (they read 0); metrics registered by functions still work.
//!
//! [`TaskMetrics::values`] flattens a subtask's metrics into Flink's names: `numRecordsIn`
//! for the task, `<operator name>.numRecordsIn` for an operator, `<operator name>.<name>` for
//! a metric a function registered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Over how long record and byte rates are averaged (Flink's `MeterView` default).
pub const RATE_SPAN: Duration = Duration::from_secs(60);
/// Over how long busy, idle and backpressured time per second are averaged.
pub const TIME_SPAN: Duration = Duration::from_secs(5);
/// How often the view updater samples the counters.
pub const UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// The watermark of an input or output that has not seen one (Flink's `Long.MIN_VALUE`).
pub const NO_WATERMARK: i64 = i64::MIN;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `n` to a built-in counter; compiled out without the `metrics` feature.
#[inline(always)]
pub(crate) fn count(counter: &AtomicU64, n: usize) {
    #[cfg(feature = "metrics")]
    counter.fetch_add(n as u64, Ordering::Relaxed);
    #[cfg(not(feature = "metrics"))]
    let _ = (counter, n);
}

/// Sets a built-in watermark gauge; compiled out without the `metrics` feature.
#[inline(always)]
pub(crate) fn set_watermark(gauge: &AtomicI64, watermark: i64) {
    #[cfg(feature = "metrics")]
    gauge.store(watermark, Ordering::Relaxed);
    #[cfg(not(feature = "metrics"))]
    let _ = (gauge, watermark);
}

/// Runs `wait` and adds the time it took, in ns, to `counter` (a wait, never a record: one
/// clock read before and one after). Without the `metrics` feature, only runs `wait`.
#[inline(always)]
pub(crate) fn timed<R>(counter: &AtomicU64, wait: impl FnOnce() -> R) -> R {
    #[cfg(feature = "metrics")]
    {
        let start = Instant::now();
        let r = wait();
        counter.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = counter;
        wait()
    }
}

/// A started wait: [`stop`](Self::stop) adds its duration to a counter (for waits whose
/// result borrows what a closure for [`timed`] would). Nothing without the `metrics` feature.
pub(crate) struct WaitClock {
    #[cfg(feature = "metrics")]
    start: Instant,
}

impl WaitClock {
    #[inline(always)]
    pub(crate) fn start() -> Self {
        WaitClock {
            #[cfg(feature = "metrics")]
            start: Instant::now(),
        }
    }

    #[inline(always)]
    pub(crate) fn stop(self, counter: &AtomicU64) {
        #[cfg(feature = "metrics")]
        counter.fetch_add(self.start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        #[cfg(not(feature = "metrics"))]
        let _ = counter;
    }
}

/// A count that functions increase (and may decrease), Flink's `Counter`. Cloning shares it.
/// Each call is one relaxed atomic add.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicI64>);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn inc_by(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn dec_by(&self, n: i64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn count(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value read when the metrics are reported, Flink's `Gauge`: a function of the caller's.
#[derive(Clone)]
pub struct Gauge(Arc<dyn Fn() -> f64 + Send + Sync>);

impl Gauge {
    pub fn value(&self) -> f64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gauge({})", self.value())
    }
}

/// Events and their rate per second over the last 60 s, Flink's `Meter` (a `MeterView`):
/// marking is a relaxed atomic add; the rate is updated by the view updater once a second.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    events: Arc<AtomicU64>,
    window: Arc<Mutex<RateWindow<1>>>,
}

impl Meter {
    #[inline]
    pub fn mark_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn mark_events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
    /// Events per second over the last 60 s (over what has been sampled, early on).
    pub fn rate(&self) -> f64 {
        lock(&self.window).rates(RATE_SPAN)[0]
    }
    fn update(&self, now: Instant) {
        lock(&self.window).update(now, [self.count()]);
    }
}

/// How many of the latest values a [`Histogram`] keeps.
pub const HISTOGRAM_WINDOW: usize = 1024;

/// The distribution of the last [`HISTOGRAM_WINDOW`] values, Flink's `Histogram` (as its
/// `DescriptiveStatisticsHistogram`). An update is one relaxed atomic add and one store.
#[derive(Clone)]
pub struct Histogram(Arc<HistogramInner>);

struct HistogramInner {
    values: Box<[AtomicI64]>,
    updates: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        let values = (0..HISTOGRAM_WINDOW).map(|_| AtomicI64::new(0)).collect();
        Histogram(Arc::new(HistogramInner { values, updates: AtomicU64::new(0) }))
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram({:?})", self.statistics())
    }
}

/// What a [`Histogram`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HistogramStatistics {
    /// Every value ever added (not only the window's).
    pub count: u64,
    pub min: i64,
    pub max: i64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Histogram {
    #[inline]
    pub fn update(&self, value: i64) {
        let i = self.0.updates.fetch_add(1, Ordering::Relaxed) as usize % HISTOGRAM_WINDOW;
        self.0.values[i].store(value, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.updates.load(Ordering::Relaxed)
    }

    /// Statistics over the window (a racing update may show up in one slot or not).
    pub fn statistics(&self) -> HistogramStatistics {
        let count = self.count();
        let n = (count as usize).min(HISTOGRAM_WINDOW);
        if n == 0 {
            return HistogramStatistics::default();
        }
        let mut v: Vec<i64> = self.0.values[..n].iter().map(|a| a.load(Ordering::Relaxed)).collect();
        v.sort_unstable();
        let quantile = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64;
        HistogramStatistics {
            count,
            min: v[0],
            max: v[n - 1],
            mean: v.iter().map(|&x| x as f64).sum::<f64>() / n as f64,
            p50: quantile(0.5),
            p95: quantile(0.95),
            p99: quantile(0.99),
        }
    }
}

/// A sliding window of samples of `K` monotonic counters, from which their rates per second
/// are read (Flink's `MeterView`, for several counters at once). Fed by the view updater.
#[derive(Debug, Clone)]
pub struct RateWindow<const K: usize> {
    samples: VecDeque<(Instant, [u64; K])>,
}

impl<const K: usize> Default for RateWindow<K> {
    fn default() -> Self {
        RateWindow { samples: VecDeque::new() }
    }
}

impl<const K: usize> RateWindow<K> {
    /// Adds a sample taken at `now`; forgets samples older than [`RATE_SPAN`] (keeping the
    /// newest of those, so that a full span stays covered).
    pub fn update(&mut self, now: Instant, counts: [u64; K]) {
        self.samples.push_back((now, counts));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= RATE_SPAN {
            self.samples.pop_front();
        }
    }

    /// Each counter's increase per second between the newest sample and the oldest one no
    /// more than `span` before it; 0 before two samples.
    pub fn rates(&self, span: Duration) -> [f64; K] {
        let Some(&(t1, last)) = self.samples.back() else { return [0.0; K] };
        let Some(&(t0, first)) = self.samples.iter().find(|(t, _)| t1.duration_since(*t) <= span) else {
            return [0.0; K];
        };
        let secs = t1.duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return [0.0; K];
        }
        std::array::from_fn(|i| last[i].saturating_sub(first[i]) as f64 / secs)
    }
}

/// A metric a function registered.
#[derive(Debug, Clone)]
pub enum UserMetric {
    Counter(Counter),
    Gauge(Gauge),
    Meter(Meter),
    Histogram(Histogram),
}

/// The metrics of one operator subtask.
#[derive(Debug)]
pub struct OperatorMetrics {
    /// The operator's name, the scope of its metrics within the subtask.
    pub name: String,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub input_watermark: AtomicI64,
    pub output_watermark: AtomicI64,
    user: Mutex<Vec<(String, UserMetric)>>,
    window: Mutex<RateWindow<2>>,
}

/// The metric group of one operator subtask (Flink's `OperatorMetricGroup`), which functions
/// reach through `RuntimeContext::metrics()`. Metrics registered on it are reported as
/// `<operator name>.<name>` with the subtask's other metrics. Cloning shares it.
///
/// ```
/// use eddy_runtime::metrics::MetricGroup;
/// let group = MetricGroup::new("Map");
/// let parsed = group.counter("parsedRecords");
/// parsed.inc();
/// assert_eq!(group.counter("parsedRecords").count(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct MetricGroup(Arc<OperatorMetrics>);

impl std::ops::Deref for MetricGroup {
    type Target = OperatorMetrics;
    fn deref(&self) -> &OperatorMetrics {
        &self.0
    }
}

impl Default for MetricGroup {
    fn default() -> Self {
        MetricGroup::new("")
    }
}

impl MetricGroup {
    /// A group of its own, reported by no subtask (operators in tests; `Emitter`s before
    /// their operator gives them its group).
    pub fn new(operator_name: &str) -> Self {
        MetricGroup(Arc::new(OperatorMetrics {
            name: operator_name.to_string(),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            input_watermark: AtomicI64::new(NO_WATERMARK),
            output_watermark: AtomicI64::new(NO_WATERMARK),
            user: Mutex::new(Vec::new()),
            window: Mutex::new(RateWindow::default()),
        }))
    }

    pub fn operator_name(&self) -> &str {
        &self.0.name
    }

    /// Registers `name`, or returns the metric already registered under it when it is of the
    /// kind `pick` accepts. A name registered with another kind is replaced by a new metric
    /// that is not reported, as Flink does with a name clash, and a warning is logged.
    fn register<M>(
        &self,
        name: &str,
        pick: impl Fn(&UserMetric) -> Option<M>,
        make: impl FnOnce() -> (M, UserMetric),
    ) -> M {
        let mut user = lock(&self.0.user);
        if let Some((_, existing)) = user.iter().find(|(n, _)| n == name) {
            if let Some(m) = pick(existing) {
                return m;
            }
            tracing::warn!(operator = %self.0.name, metric = name,
                "a metric of another kind is registered under this name; the new one is not reported");
            return make().0;
        }
        let (m, stored) = make();
        user.push((name.to_string(), stored));
        m
    }

    /// The counter `name` of this operator subtask.
    pub fn counter(&self, name: &str) -> Counter {
        self.register(
            name,
            |m| match m {
                UserMetric::Counter(c) => Some(c.clone()),
                _ => None,
            },
            || {
                let c = Counter::default();
                (c.clone(), UserMetric::Counter(c))
            },
        )
    }

    /// Registers the gauge `name`, read by calling `value` whenever metrics are reported (on
    /// another thread: share what it reads through atomics).
    pub fn gauge(&self, name: &str, value: impl Fn() -> f64 + Send + Sync + 'static) -> Gauge {
        let gauge = Gauge(Arc::new(value));
        let g = gauge.clone();
        self.register(name, |_| None, move || (g.clone(), UserMetric::Gauge(g)));
        gauge
    }

    /// The meter `name`: events and their rate per second.
    pub fn meter(&self, name: &str) -> Meter {
        self.register(
            name,
            |m| match m {
                UserMetric::Meter(x) => Some(x.clone()),
                _ => None,
            },
            || {
                let m = Meter::default();
                (m.clone(), UserMetric::Meter(m))
            },
        )
    }

    /// The histogram `name`: the distribution of the latest values.
    pub fn histogram(&self, name: &str) -> Histogram {
        self.register(
            name,
            |m| match m {
                UserMetric::Histogram(h) => Some(h.clone()),
                _ => None,
            },
            || {
                let h = Histogram::default();
                (h.clone(), UserMetric::Histogram(h))
            },
        )
    }

    fn update_views(&self, now: Instant) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        lock(&self.0.window).update(now, [load(&self.records_in), load(&self.records_out)]);
        for (_, m) in lock(&self.0.user).iter() {
            if let UserMetric::Meter(m) = m {
                m.update(now);
            }
        }
    }

    /// Appends this operator's metrics as `<operator name>.<metric>`.
    fn values(&self, out: &mut Vec<(String, f64)>) {
        let scope = &self.0.name;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let [rate_in, rate_out] = lock(&self.0.window).rates(RATE_SPAN);
        out.push((format!("{scope}.numRecordsIn"), load(&self.records_in)));
        out.push((format!("{scope}.numRecordsOut"), load(&self.records_out)));
        out.push((format!("{scope}.numRecordsInPerSecond"), rate_in));
        out.push((format!("{scope}.numRecordsOutPerSecond"), rate_out));
        let wm = |w: &AtomicI64| w.load(Ordering::Relaxed) as f64;
        out.push((format!("{scope}.currentInputWatermark"), wm(&self.input_watermark)));
        out.push((format!("{scope}.currentOutputWatermark"), wm(&self.output_watermark)));
        for (name, m) in lock(&self.0.user).iter() {
            match m {
                UserMetric::Counter(c) => out.push((format!("{scope}.{name}"), c.count() as f64)),
                UserMetric::Gauge(g) => out.push((format!("{scope}.{name}"), g.value())),
                UserMetric::Meter(m) => out.push((format!("{scope}.{name}"), m.rate())),
                UserMetric::Histogram(h) => {
                    let s = h.statistics();
                    let parts = [
                        ("count", s.count as f64),
                        ("min", s.min as f64),
                        ("max", s.max as f64),
                        ("mean", s.mean),
                        ("p50", s.p50),
                        ("p95", s.p95),
                        ("p99", s.p99),
                    ];
                    for (part, v) in parts {
                        out.push((format!("{scope}.{name}_{part}"), v));
                    }
                }
            }
        }
    }
}

/// The metrics of one subtask: Flink's task metrics `numRecordsIn/Out`, `numBytesIn/Out`,
/// their rates, busy/idle/backpressured time and watermarks, plus each operator's group.
///
/// Records are counted once per batch (one relaxed atomic add), never per record:
/// `records_in` where the task's input gates hand batches to the chain, `records_out` where
/// the chain's partition writers take them (records leaving the task; a record written to two
/// exchanges counts twice, a broadcast record once). A source has no input and a sink no
/// partition writer, so their `records_in` and `records_out` are 0. `bytes_in` and
/// `bytes_out` count the frames of remote channels (header included); in-process channels
/// move records without encoding them and count no bytes.
///
/// `idle_ns` is the time the task waited for input (an empty input gate, a source with
/// nothing to read), `backpressured_ns` the time it waited for room in an output channel (a
/// full local channel, a remote channel without credit); the rest of the time is busy.
///
/// Cache-line aligned, so that the counters of tasks on different threads never share a line.
#[derive(Debug)]
#[repr(align(64))]
pub struct TaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub idle_ns: AtomicU64,
    pub backpressured_ns: AtomicU64,
    /// The watermark the task's chain last received (the minimum over its input channels).
    pub input_watermark: AtomicI64,
    /// The watermark the task last sent to its output channels.
    pub output_watermark: AtomicI64,
    created: Instant,
    operators: Mutex<Vec<MetricGroup>>,
    window: Mutex<RateWindow<6>>,
}

impl Default for TaskMetrics {
    fn default() -> Self {
        TaskMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            input_watermark: AtomicI64::new(NO_WATERMARK),
            output_watermark: AtomicI64::new(NO_WATERMARK),
            created: Instant::now(),
            operators: Mutex::new(Vec::new()),
            window: Mutex::new(RateWindow::default()),
        }
    }
}

/// A subtask's time per second, from its wait counters: Flink's `busyTimeMsPerSecond`,
/// `idleTimeMsPerSecond` and `backPressuredTimeMsPerSecond`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TimeRatios {
    pub busy_ms_per_second: f64,
    pub idle_ms_per_second: f64,
    pub backpressured_ms_per_second: f64,
}

impl TimeRatios {
    /// From the idle and backpressured ns per second: busy is the rest of the second.
    pub fn from_wait_rates(idle_ns_per_second: f64, backpressured_ns_per_second: f64) -> Self {
        let idle = (idle_ns_per_second / 1e6).clamp(0.0, 1000.0);
        let backpressured = (backpressured_ns_per_second / 1e6).clamp(0.0, 1000.0 - idle);
        TimeRatios {
            busy_ms_per_second: (1000.0 - idle - backpressured).max(0.0),
            idle_ms_per_second: idle,
            backpressured_ms_per_second: backpressured,
        }
    }
}

impl TaskMetrics {
    /// The counters now: `[records_in, records_out, bytes_in, bytes_out]`.
    pub fn snapshot(&self) -> [u64; 4] {
        [&self.records_in, &self.records_out, &self.bytes_in, &self.bytes_out]
            .map(|c| c.load(Ordering::Relaxed))
    }

    /// Creates the metric group of the chain's next operator, `name`.
    pub fn operator(&self, name: &str) -> MetricGroup {
        let group = MetricGroup::new(name);
        lock(&self.operators).push(group.clone());
        group
    }

    /// The groups of the chain's operators, head first.
    pub fn operators(&self) -> Vec<MetricGroup> {
        lock(&self.operators).clone()
    }

    fn counts(&self) -> [u64; 6] {
        [
            &self.records_in,
            &self.records_out,
            &self.bytes_in,
            &self.bytes_out,
            &self.idle_ns,
            &self.backpressured_ns,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }

    /// Samples the counters for the rates (the view updater calls this once a second).
    pub fn update_views(&self, now: Instant) {
        lock(&self.window).update(now, self.counts());
        for op in lock(&self.operators).iter() {
            op.update_views(now);
        }
    }

    /// Busy, idle and backpressured time per second over the last [`TIME_SPAN`].
    pub fn time_ratios(&self) -> TimeRatios {
        let r = lock(&self.window).rates(TIME_SPAN);
        TimeRatios::from_wait_rates(r[4], r[5])
    }

    /// The task's current output watermark: what its partition writers last sent, or for a
    /// task without any (a sink) its last operator's output watermark.
    fn current_output_watermark(&self) -> i64 {
        match self.output_watermark.load(Ordering::Relaxed) {
            NO_WATERMARK => lock(&self.operators)
                .last()
                .map_or(NO_WATERMARK, |op| op.output_watermark.load(Ordering::Relaxed)),
            w => w,
        }
    }

    /// Every metric of the subtask by Flink's name: task metrics as `numRecordsIn`, operator
    /// metrics as `<operator name>.numRecordsIn`, registered metrics as `<operator>.<name>`
    /// (a histogram as `<name>_count`, `_min`, `_max`, `_mean`, `_p50`, `_p95`, `_p99`).
    /// Watermarks are ms since the epoch, [`NO_WATERMARK`] before the first.
    pub fn values(&self) -> Vec<(String, f64)> {
        let [records_in, records_out, bytes_in, bytes_out, idle, backpressured] = self.counts();
        let rates = lock(&self.window).rates(RATE_SPAN);
        let times = self.time_ratios();
        let ms = |ns: u64| (ns / 1_000_000) as f64;
        let elapsed = self.created.elapsed().as_millis() as f64;
        let mut out = vec![
            ("numRecordsIn".to_string(), records_in as f64),
            ("numRecordsOut".to_string(), records_out as f64),
            ("numBytesIn".to_string(), bytes_in as f64),
            ("numBytesOut".to_string(), bytes_out as f64),
            ("numRecordsInPerSecond".to_string(), rates[0]),
            ("numRecordsOutPerSecond".to_string(), rates[1]),
            ("numBytesInPerSecond".to_string(), rates[2]),
            ("numBytesOutPerSecond".to_string(), rates[3]),
            ("busyTimeMsPerSecond".to_string(), times.busy_ms_per_second),
            ("idleTimeMsPerSecond".to_string(), times.idle_ms_per_second),
            ("backPressuredTimeMsPerSecond".to_string(), times.backpressured_ms_per_second),
            ("accumulatedIdleTimeMs".to_string(), ms(idle)),
            ("accumulatedBackPressuredTimeMs".to_string(), ms(backpressured)),
            ("accumulatedBusyTimeMs".to_string(), (elapsed - ms(idle) - ms(backpressured)).max(0.0)),
            ("currentInputWatermark".to_string(), self.input_watermark.load(Ordering::Relaxed) as f64),
            ("currentOutputWatermark".to_string(), self.current_output_watermark() as f64),
        ];
        for op in lock(&self.operators).iter() {
            op.values(&mut out);
        }
        out
    }
}

/// The process's view updater: samples every registered subtask's counters once a second,
/// on a thread of its own (started by the first registration), for as long as the subtask's
/// metrics are alive.
pub fn register_views(metrics: &Arc<TaskMetrics>) {
    static TASKS: OnceLock<Mutex<Vec<Weak<TaskMetrics>>>> = OnceLock::new();
    metrics.update_views(Instant::now());
    let mut started = false;
    let tasks = TASKS.get_or_init(|| {
        started = true;
        Mutex::new(Vec::new())
    });
    lock(tasks).push(Arc::downgrade(metrics));
    if started {
        let spawned = std::thread::Builder::new().name("eddy-metric-views".into()).spawn(|| loop {
            std::thread::sleep(UPDATE_INTERVAL);
            let Some(tasks) = TASKS.get() else { return };
            let live: Vec<Arc<TaskMetrics>> = {
                let mut tasks = lock(tasks);
                tasks.retain(|t| t.strong_count() > 0);
                tasks.iter().filter_map(Weak::upgrade).collect()
            };
            let now = Instant::now();
            for t in live {
                t.update_views(now);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metric view updater: rates stay 0");
        }
    }
}

/// Formats a metric value as Flink's REST API does: integers without a fraction.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v >= i64::MIN as f64 && v <= i64::MAX as f64 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The backpressure level of a ratio of time backpressured, as Flink classifies it.
pub fn backpressure_level(ratio: f64) -> &'static str {
    if ratio <= 0.10 {
        "ok"
    } else if ratio <= 0.5 {
        "low"
    } else {
        "high"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_increase_per_second_over_the_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::<1>::default();
        assert_eq!(w.rates(RATE_SPAN), [0.0]);
        w.update(t0, [0]);
        assert_eq!(w.rates(RATE_SPAN), [0.0], "one sample has no rate");
        for s in 1..=10u64 {
            w.update(t0 + Duration::from_secs(s), [s * 100]);
        }
        assert_eq!(w.rates(RATE_SPAN), [100.0]);
        // Only the last 5 s: 500 events.
        assert_eq!(w.rates(Duration::from_secs(5)), [100.0]);
        // The rate falls as the events stop: 10 quiet seconds of a 20 s window.
        for s in 11..=20u64 {
            w.update(t0 + Duration::from_secs(s), [1000]);
        }
        assert_eq!(w.rates(RATE_SPAN), [50.0]);
        assert_eq!(w.rates(Duration::from_secs(5)), [0.0]);
    }

    #[test]
    fn the_window_forgets_samples_older_than_the_span() {
        let t0 = Instant::now();
        let mut w = RateWindow::<1>::default();
        for s in 0..=200u64 {
            w.update(t0 + Duration::from_secs(s), [s * s]);
        }
        assert!(w.samples.len() <= 62, "kept {} samples", w.samples.len());
        // The last 60 s: (200² - 140²) / 60.
        assert_eq!(w.rates(RATE_SPAN), [(40_000.0 - 19_600.0) / 60.0]);
    }

    #[test]
    fn busy_is_the_rest_of_the_second() {
        let r = TimeRatios::from_wait_rates(250e6, 500e6);
        assert_eq!(
            (r.busy_ms_per_second, r.idle_ms_per_second, r.backpressured_ms_per_second),
            (250.0, 250.0, 500.0)
        );
        // Overlapping or late samples never add up to more than a second.
        let r = TimeRatios::from_wait_rates(800e6, 900e6);
        assert_eq!(
            (r.busy_ms_per_second, r.idle_ms_per_second, r.backpressured_ms_per_second),
            (0.0, 800.0, 200.0)
        );
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn task_time_ratios_follow_the_wait_counters() {
        let m = TaskMetrics::default();
        let t0 = Instant::now();
        m.update_views(t0);
        // Two seconds: 1.5 s idle, 0.2 s backpressured.
        count(&m.idle_ns, 1_500_000_000);
        count(&m.backpressured_ns, 200_000_000);
        m.update_views(t0 + Duration::from_secs(2));
        let r = m.time_ratios();
        assert_eq!(
            (r.idle_ms_per_second, r.backpressured_ms_per_second, r.busy_ms_per_second),
            (750.0, 100.0, 150.0)
        );
        let values: std::collections::HashMap<_, _> = m.values().into_iter().collect();
        assert_eq!(values["backPressuredTimeMsPerSecond"], 100.0);
        assert_eq!(values["currentInputWatermark"], NO_WATERMARK as f64);
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn timed_waits_add_their_duration() {
        let c = AtomicU64::new(0);
        timed(&c, || std::thread::sleep(Duration::from_millis(20)));
        assert!(c.load(Ordering::Relaxed) >= 20_000_000);
    }

    #[test]
    fn operator_metrics_are_scoped_by_operator_name() {
        let task = TaskMetrics::default();
        let map = task.operator("Map");
        map.counter("parsed").inc_by(3);
        map.gauge("answer", || 42.0);
        let h = map.histogram("latency");
        for v in 1..=100 {
            h.update(v);
        }
        let meter = map.meter("events");
        meter.mark_events(10);
        let values: std::collections::HashMap<_, _> = task.values().into_iter().collect();
        assert_eq!(values["Map.parsed"], 3.0);
        assert_eq!(values["Map.answer"], 42.0);
        assert_eq!(values["Map.latency_count"], 100.0);
        assert_eq!(values["Map.latency_p50"], 50.0);
        assert_eq!(values["Map.latency_p99"], 99.0);
        assert_eq!(values["Map.events"], 0.0, "no rate before the view updater samples twice");
        assert!(values.contains_key("Map.numRecordsIn"));
        // The same name gives the same counter; another kind under it is not reported.
        assert_eq!(map.counter("parsed").count(), 3);
        map.meter("parsed").mark_event();
        assert_eq!(task.values().iter().filter(|(n, _)| n == "Map.parsed").count(), 1);
    }

    #[test]
    fn histogram_keeps_the_latest_values() {
        let h = Histogram::default();
        for v in 0..(HISTOGRAM_WINDOW as i64 + 100) {
            h.update(v);
        }
        let s = h.statistics();
        assert_eq!(s.count, HISTOGRAM_WINDOW as u64 + 100);
        assert_eq!((s.min, s.max), (100, HISTOGRAM_WINDOW as i64 + 99));
    }

    #[test]
    fn values_format_as_flink_does() {
        assert_eq!(format_value(123.0), "123");
        assert_eq!(format_value(NO_WATERMARK as f64), "-9223372036854775808");
        assert_eq!(format_value(12.5), "12.5");
        assert_eq!(backpressure_level(0.1), "ok");
        assert_eq!(backpressure_level(0.11), "low");
        assert_eq!(backpressure_level(0.51), "high");
    }
}
