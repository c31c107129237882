//! Event time: timestamps and watermarks (Flink's `WatermarkStrategy`).
//!
//! A [`WatermarkStrategy`] says where a record's event timestamp comes from and when event time
//! advances. It applies right after a source (`from_source_with_watermarks`) or anywhere with
//! `assign_timestamps_and_watermarks`. Each parallel subtask generates its own watermarks;
//! downstream operators take the minimum over their inputs.
//!
//! ```
//! use eddy::prelude::*;
//!
//! let strategy = WatermarkStrategy::<(String, i64)>::for_bounded_out_of_orderness(Duration::from_millis(500))
//!     .with_timestamp_assigner(|event: &(String, i64), _| event.1)
//!     .with_idleness(Duration::from_secs(10));
//! # let _ = strategy;
//! ```

use std::sync::Arc;
use std::time::Duration;

use eddy_core::config::RuntimeMode;
use eddy_core::{Batch, Data, Result, NO_TIMESTAMP};
use eddy_runtime::{Emitter, OneInputOperator, OperatorContext};

/// Where a generator announces watermarks and idleness.
#[derive(Debug, Default)]
pub struct WatermarkOutput {
    watermark: Option<i64>,
    idle: Option<bool>,
}

impl WatermarkOutput {
    /// Event time has reached `watermark`: no record with a timestamp at or below it follows.
    pub fn emit_watermark(&mut self, watermark: i64) {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
        self.idle = Some(false);
    }
    /// This input produces nothing for now; downstream stops waiting for its watermark.
    pub fn mark_idle(&mut self) {
        self.idle = Some(true);
    }
    /// This input produces records again.
    pub fn mark_active(&mut self) {
        self.idle = Some(false);
    }
}

/// Generates watermarks from events and periodically (Flink's `WatermarkGenerator`).
///
/// Punctuated generators emit in `on_event`; periodic ones in `on_periodic_emit`, which runs
/// every `pipeline.auto-watermark-interval` (200 ms by default).
pub trait WatermarkGenerator<T>: Send + 'static {
    fn on_event(&mut self, event: &T, timestamp: i64, output: &mut WatermarkOutput);
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput);
}

/// Watermarks that trail the largest timestamp seen by a fixed bound:
/// `max timestamp − bound − 1`.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    max_timestamp: i64,
    bound: i64,
}

impl BoundedOutOfOrderness {
    pub fn new(bound: Duration) -> Self {
        let bound = bound.as_millis() as i64;
        // As in Flink: the first watermark is i64::MIN.
        BoundedOutOfOrderness { max_timestamp: i64::MIN + bound + 1, bound }
    }

    #[inline]
    fn observe(&mut self, timestamp: i64) {
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    fn current(&self) -> i64 {
        self.max_timestamp - self.bound - 1
    }
}

impl<T> WatermarkGenerator<T> for BoundedOutOfOrderness {
    fn on_event(&mut self, _: &T, timestamp: i64, _: &mut WatermarkOutput) {
        self.observe(timestamp);
    }
    fn on_periodic_emit(&mut self, output: &mut WatermarkOutput) {
        output.emit_watermark(self.current());
    }
}

type Assigner<T> = Arc<dyn Fn(&T, i64) -> i64 + Send + Sync>;
type GeneratorFactory<T> = Arc<dyn Fn() -> Box<dyn WatermarkGenerator<T>> + Send + Sync>;

enum Generator<T> {
    /// Built in and inlined: the per-record work is one `max`.
    Bounded(Duration),
    None,
    Custom(GeneratorFactory<T>),
}

impl<T> Clone for Generator<T> {
    fn clone(&self) -> Self {
        match self {
            Generator::Bounded(d) => Generator::Bounded(*d),
            Generator::None => Generator::None,
            Generator::Custom(f) => Generator::Custom(f.clone()),
        }
    }
}

/// How timestamps are assigned and watermarks generated.
pub struct WatermarkStrategy<T> {
    generator: Generator<T>,
    assigner: Option<Assigner<T>>,
    idleness: Option<Duration>,
}

impl<T> Clone for WatermarkStrategy<T> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            generator: self.generator.clone(),
            assigner: self.assigner.clone(),
            idleness: self.idleness,
        }
    }
}

impl<T: Data> WatermarkStrategy<T> {
    /// Watermarks `max timestamp − bound − 1`, emitted periodically.
    pub fn for_bounded_out_of_orderness(bound: Duration) -> Self {
        WatermarkStrategy { generator: Generator::Bounded(bound), assigner: None, idleness: None }
    }

    /// For timestamps that never decrease: `max timestamp − 1`.
    pub fn for_monotonous_timestamps() -> Self {
        Self::for_bounded_out_of_orderness(Duration::ZERO)
    }

    /// No watermarks (event time never advances until the input ends).
    pub fn no_watermarks() -> Self {
        WatermarkStrategy { generator: Generator::None, assigner: None, idleness: None }
    }

    /// A custom generator, made once per parallel subtask.
    pub fn for_generator<G, F>(make: F) -> Self
    where
        G: WatermarkGenerator<T>,
        F: Fn() -> G + Send + Sync + 'static,
    {
        let factory: GeneratorFactory<T> = Arc::new(move || Box::new(make()));
        WatermarkStrategy { generator: Generator::Custom(factory), assigner: None, idleness: None }
    }

    /// Takes each record's timestamp from the record: `f(record, previous timestamp)`.
    /// Without an assigner, records keep the timestamps they carry (e.g. from the source).
    pub fn with_timestamp_assigner<F>(mut self, f: F) -> Self
    where
        F: Fn(&T, i64) -> i64 + Send + Sync + 'static,
    {
        self.assigner = Some(Arc::new(f));
        self
    }

    /// Marks the input idle after `timeout` without records, so that it does not hold back
    /// the event time of downstream operators.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }

    pub(crate) fn operator(&self, ctx: &OperatorContext) -> TimestampsAndWatermarks<T> {
        let generator = match &self.generator {
            Generator::Bounded(d) => ActiveGenerator::Bounded(BoundedOutOfOrderness::new(*d)),
            Generator::None => ActiveGenerator::None,
            Generator::Custom(f) => ActiveGenerator::Custom(f()),
        };
        TimestampsAndWatermarks {
            generator,
            assigner: self.assigner.clone(),
            idleness: self.idleness.map(|d| d.as_millis() as i64),
            interval: if ctx.runtime_mode == RuntimeMode::Batch { 0 } else { ctx.auto_watermark_interval },
            next_periodic: None,
            last_emitted: i64::MIN,
            last_event_at: ctx.clock.now_ms(),
            idle: false,
            emit_watermarks: ctx.runtime_mode != RuntimeMode::Batch,
            clock: ctx.clock.clone(),
        }
    }
}

enum ActiveGenerator<T> {
    Bounded(BoundedOutOfOrderness),
    None,
    Custom(Box<dyn WatermarkGenerator<T>>),
}

/// Assigns timestamps and generates watermarks (Flink's `TimestampsAndWatermarksOperator`).
///
/// Watermarks from upstream are dropped except the final one of a bounded input, which
/// is forwarded so that everything downstream fires.
pub(crate) struct TimestampsAndWatermarks<T> {
    generator: ActiveGenerator<T>,
    assigner: Option<Assigner<T>>,
    idleness: Option<i64>,
    interval: i64,
    next_periodic: Option<i64>,
    last_emitted: i64,
    last_event_at: i64,
    idle: bool,
    /// BATCH mode ignores watermarks but the final one.
    emit_watermarks: bool,
    clock: eddy_runtime::time::ClockRef,
}

impl<T: Data> TimestampsAndWatermarks<T> {
    fn apply(&mut self, o: WatermarkOutput, out: &mut Emitter<T>) -> Result<()> {
        if let Some(idle) = o.idle {
            if idle != self.idle && self.emit_watermarks {
                self.idle = idle;
                out.emit_idle(idle)?;
            }
        }
        if let Some(w) = o.watermark {
            // Watermarks only move forward.
            if w > self.last_emitted && self.emit_watermarks {
                self.last_emitted = w;
                out.emit_watermark(w)?;
            }
        }
        Ok(())
    }
}

impl<T: Data> OneInputOperator for TimestampsAndWatermarks<T> {
    type In = T;
    type Out = T;

    fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        if self.interval > 0 {
            self.next_periodic = Some(self.clock.now_ms() + self.interval);
        }
        Ok(())
    }

    fn process_batch(&mut self, mut batch: Batch<T>, out: &mut Emitter<T>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.idleness.is_some() {
            self.last_event_at = self.clock.now_ms();
            if self.idle {
                let mut o = WatermarkOutput::default();
                o.mark_active();
                self.apply(o, out)?;
            }
        }
        if let Some(assign) = &self.assigner {
            if batch.timestamps.is_empty() {
                batch.timestamps = vec![NO_TIMESTAMP; batch.len()];
            }
            for (v, ts) in batch.values.iter().zip(batch.timestamps.iter_mut()) {
                *ts = assign(v, *ts);
            }
        }
        match &mut self.generator {
            ActiveGenerator::Bounded(g) => {
                for &ts in &batch.timestamps {
                    g.observe(ts);
                }
                out.emit_batch(batch)
            }
            ActiveGenerator::None => out.emit_batch(batch),
            ActiveGenerator::Custom(_) => {
                // A punctuated watermark goes out right after the record that caused it.
                let mut pending = Batch::with_capacity(batch.len());
                for (v, ts) in batch.into_iter_with_timestamps() {
                    let mut o = WatermarkOutput::default();
                    if let ActiveGenerator::Custom(g) = &mut self.generator {
                        g.on_event(&v, ts, &mut o);
                    }
                    pending.push_with_timestamp(v, ts);
                    if o.watermark.is_some() || o.idle.is_some() {
                        out.emit_batch(pending.take())?;
                        self.apply(o, out)?;
                    }
                }
                out.emit_batch(pending)
            }
        }
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<T>) -> Result<()> {
        if watermark == i64::MAX && self.last_emitted < i64::MAX {
            // An idle output must turn active, or downstream ignores the final watermark.
            if self.idle {
                self.idle = false;
                out.emit_idle(false)?;
            }
            self.last_emitted = i64::MAX;
            out.emit_watermark(i64::MAX)?;
        }
        Ok(())
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.next_periodic
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Emitter<T>) -> Result<()> {
        self.next_periodic = Some(now + self.interval);
        let mut o = WatermarkOutput::default();
        if self.idleness.is_some_and(|timeout| now - self.last_event_at >= timeout) {
            if !self.idle {
                o.mark_idle();
            }
        } else {
            match &mut self.generator {
                ActiveGenerator::Bounded(g) => WatermarkGenerator::<T>::on_periodic_emit(g, &mut o),
                ActiveGenerator::None => {}
                ActiveGenerator::Custom(g) => g.on_periodic_emit(&mut o),
            }
        }
        self.apply(o, out)
    }
}
