//! How records of one task are spread over the subtasks of the next: Flink's partitioners.
//!
//! A [`PartitionWriter`] sits at the end of a chain. It keeps one batch per outgoing channel,
//! picks a channel per record with a [`ChannelSelector`] (monomorphized: no virtual call per
//! record), and sends a channel's batch when it is full or when the buffer timeout flushes it.
//! Watermarks, idleness, checkpoint barriers and end of input go to every channel, after the
//! records buffered before them.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

#[cfg(test)]
use eddy_core::keygroup::assign_to_key_group;
use eddy_core::keygroup::{flink_murmur_hash, hash_code, operator_index_for_key_group};
use eddy_core::{Batch, CheckpointBarrier, Data, EddyError, Key, Result, StreamElement, NO_TIMESTAMP};
use serde::Serialize;

use crate::channel::{ChannelSender, OutputChannel};
use crate::checkpoint::ChainSnapshot;
use crate::net::RemoteSender;
use crate::output::Output;
use crate::task::TaskMetrics;

/// The kind of an exchange between two operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PartitionKind {
    /// Not chosen by the user: forward when parallelism matches, else rebalance.
    Default,
    Forward,
    Rebalance,
    Rescale,
    Shuffle,
    Broadcast,
    Global,
    Hash,
    Custom,
}

impl PartitionKind {
    /// The `ship_strategy` name Flink shows in plans.
    pub fn ship_strategy(self) -> &'static str {
        match self {
            PartitionKind::Default | PartitionKind::Forward => "FORWARD",
            PartitionKind::Rebalance => "REBALANCE",
            PartitionKind::Rescale => "RESCALE",
            PartitionKind::Shuffle => "SHUFFLE",
            PartitionKind::Broadcast => "BROADCAST",
            PartitionKind::Global => "GLOBAL",
            PartitionKind::Hash => "HASH",
            PartitionKind::Custom => "CUSTOM",
        }
    }

    /// Resolves `Default` once both parallelisms are known.
    pub fn resolve(self, upstream: usize, downstream: usize) -> PartitionKind {
        match self {
            PartitionKind::Default if upstream == downstream => PartitionKind::Forward,
            PartitionKind::Default => PartitionKind::Rebalance,
            k => k,
        }
    }

    /// Each producer talks to a subset of consumers (rather than to all of them).
    pub fn is_pointwise(self) -> bool {
        matches!(self, PartitionKind::Forward | PartitionKind::Rescale)
    }
}

/// The consumers that producer `index` of `upstream` sends to, for a pointwise exchange.
pub fn pointwise_targets(upstream: usize, downstream: usize, index: usize) -> Vec<usize> {
    if upstream >= downstream {
        vec![index * downstream / upstream]
    } else {
        (0..downstream).filter(|j| j * upstream / downstream == index).collect()
    }
}

/// Picks the channel of one record.
pub trait ChannelSelector<T>: Send {
    fn select(&mut self, record: &T, channels: usize) -> Result<usize>;
}

/// Every record to channel 0 (forward, global, or a single consumer).
pub struct First;
impl<T> ChannelSelector<T> for First {
    #[inline]
    fn select(&mut self, _: &T, _: usize) -> Result<usize> {
        Ok(0)
    }
}

/// Round-robin (rebalance, rescale).
pub struct RoundRobin(usize);
impl<T> ChannelSelector<T> for RoundRobin {
    #[inline]
    fn select(&mut self, _: &T, channels: usize) -> Result<usize> {
        self.0 += 1;
        if self.0 >= channels {
            self.0 = 0;
        }
        Ok(self.0)
    }
}

/// Uniformly random (shuffle), from a xorshift generator seeded per subtask.
pub struct Random(u64);
impl<T> ChannelSelector<T> for Random {
    #[inline]
    fn select(&mut self, _: &T, channels: usize) -> Result<usize> {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Ok((((self.0 >> 32) * channels as u64) >> 32) as usize)
    }
}

/// By key group: Flink's keyed exchange.
///
/// The owner of every key group is looked up in a table built once, and the key group itself
/// is a mask when max parallelism is a power of two (the default), so routing a record costs
/// one hash and no division.
pub struct KeyGroupSelector<F> {
    key: F,
    max_parallelism: usize,
    /// Channel of each key group, for `channels_of_table` channels.
    owner: Vec<u32>,
    channels_of_table: usize,
}

impl<F> KeyGroupSelector<F> {
    pub fn new(key: F, max_parallelism: usize) -> Self {
        KeyGroupSelector { key, max_parallelism, owner: Vec::new(), channels_of_table: 0 }
    }
}

impl<T, K: Key, F: Fn(&T) -> K + Send> ChannelSelector<T> for KeyGroupSelector<F> {
    #[inline]
    fn select(&mut self, record: &T, channels: usize) -> Result<usize> {
        if self.channels_of_table != channels {
            let m = self.max_parallelism;
            self.owner = (0..m).map(|kg| operator_index_for_key_group(m, channels, kg) as u32).collect();
            self.channels_of_table = channels;
        }
        let murmur = flink_murmur_hash(hash_code(&(self.key)(record))) as usize;
        let kg = if self.max_parallelism.is_power_of_two() {
            murmur & (self.max_parallelism - 1)
        } else {
            murmur % self.max_parallelism
        };
        Ok(self.owner[kg] as usize)
    }
}

/// By a user partitioner over a key (`partition_custom`).
pub struct CustomSelector<F, P> {
    key: F,
    partitioner: P,
}
impl<T, K, F: Fn(&T) -> K + Send, P: Fn(&K, usize) -> usize + Send> ChannelSelector<T>
    for CustomSelector<F, P>
{
    #[inline]
    fn select(&mut self, record: &T, channels: usize) -> Result<usize> {
        let ch = (self.partitioner)(&(self.key)(record), channels);
        if ch < channels {
            Ok(ch)
        } else {
            Err(EddyError::user(format!(
                "custom partitioner returned channel {ch}, but there are only {channels}"
            )))
        }
    }
}

/// Writes one task's output to the channels of one exchange.
pub struct PartitionWriter<T, S> {
    channels: Vec<OutputChannel<T>>,
    buffers: Vec<Batch<T>>,
    selector: S,
    batch_size: usize,
    broadcast: bool,
    /// Counts the records leaving the task (`records_out`).
    metrics: Arc<TaskMetrics>,
    /// The channel of each record of the batch being written.
    routes: Vec<u32>,
    /// How many records of that batch go to each channel.
    counts: Vec<usize>,
}

impl<T: Data, S: ChannelSelector<T>> PartitionWriter<T, S> {
    pub fn new(channels: Vec<OutputChannel<T>>, selector: S, batch_size: usize, broadcast: bool) -> Self {
        let buffers = channels.iter().map(|_| Batch::new()).collect();
        let metrics = Arc::default();
        let batch_size = batch_size.max(1);
        let (routes, counts) = (Vec::new(), Vec::new());
        PartitionWriter { channels, buffers, selector, batch_size, broadcast, metrics, routes, counts }
    }

    /// Counts the records written into `metrics.records_out`.
    pub fn with_metrics(mut self, metrics: Arc<TaskMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    fn send_buffer(&mut self, ch: usize) -> Result<()> {
        if self.buffers[ch].is_empty() {
            return Ok(());
        }
        let b = std::mem::replace(&mut self.buffers[ch], Batch::with_capacity(self.batch_size));
        self.channels[ch].send_counted(StreamElement::Records(b), &self.metrics)
    }

    /// Sends the buffers that hold `batch_size` records or more.
    fn send_full(&mut self) -> Result<()> {
        for ch in 0..self.buffers.len() {
            if self.buffers[ch].len() >= self.batch_size {
                self.send_buffer(ch)?;
            }
        }
        Ok(())
    }

    fn send_all(&mut self, element: StreamElement<T>) -> Result<()> {
        for ch in 0..self.channels.len() {
            self.send_buffer(ch)?;
        }
        for c in &self.channels {
            c.send_counted(element.clone(), &self.metrics)?;
        }
        Ok(())
    }
}

impl<T: Data, S: ChannelSelector<T>> Output<T> for PartitionWriter<T, S> {
    fn emit_batch(&mut self, mut batch: Batch<T>) -> Result<()> {
        crate::metrics::count(&self.metrics.records_out, batch.len());
        let n = self.channels.len();
        if self.broadcast || n == 1 {
            // Whole batches: no per-record routing.
            for ch in 0..n {
                let buf = &mut self.buffers[ch];
                if buf.is_empty() && batch.len() >= self.batch_size / 2 {
                    let b = if ch + 1 == n { std::mem::take(&mut batch) } else { batch.clone() };
                    self.channels[ch].send_counted(StreamElement::Records(b), &self.metrics)?;
                    continue;
                }
                if ch + 1 == n {
                    buf.append(&mut batch);
                } else {
                    buf.append(&mut batch.clone());
                }
                if self.buffers[ch].len() >= self.batch_size {
                    self.send_buffer(ch)?;
                }
            }
            return Ok(());
        }
        // First the channel of every record: the hashes are independent of each other and of
        // the copying below, so the CPU overlaps them.
        self.routes.clear();
        for v in &batch.values {
            self.routes.push(self.selector.select(v, n)? as u32);
        }
        // Then each record moves to its channel's buffer, and the buffers holding `batch_size`
        // records or more are sent whole.
        let Batch { values, timestamps } = batch;
        for buf in &mut self.buffers {
            // Timestamps stay aligned with values when batches with and without them mix.
            if !(timestamps.is_empty() && buf.timestamps.is_empty()) {
                buf.timestamps.resize(buf.values.len(), NO_TIMESTAMP);
            }
        }
        self.counts.clear();
        self.counts.resize(n, 0);
        for &ch in &self.routes {
            self.counts[ch as usize] += 1;
        }
        for (buf, &count) in self.buffers.iter_mut().zip(&self.counts) {
            buf.values.reserve(count);
        }
        scatter(values, &self.routes, &self.counts, &mut self.buffers);
        if !timestamps.is_empty() {
            for (&ch, ts) in self.routes.iter().zip(timestamps) {
                self.buffers[ch as usize].timestamps.push(ts);
            }
        }
        for buf in &mut self.buffers {
            if !buf.timestamps.is_empty() {
                buf.timestamps.resize(buf.values.len(), NO_TIMESTAMP);
            }
        }
        self.send_full()
    }

    fn emit_watermark(&mut self, watermark: i64) -> Result<()> {
        crate::metrics::set_watermark(&self.metrics.output_watermark, watermark);
        self.send_all(StreamElement::Watermark(watermark))
    }

    fn emit_idle(&mut self, idle: bool) -> Result<()> {
        self.send_all(StreamElement::Idle(idle))
    }

    fn end_input(&mut self) -> Result<()> {
        self.send_all(StreamElement::EndOfInput)
    }

    fn emit_barrier(&mut self, barrier: &CheckpointBarrier, _: &mut ChainSnapshot) -> Result<()> {
        self.send_all(StreamElement::CheckpointBarrier(*barrier))
    }

    fn flush(&mut self) -> Result<()> {
        for ch in 0..self.channels.len() {
            self.send_buffer(ch)?;
        }
        Ok(())
    }
}

/// What a partition writer needs to know about its place in the job.
#[derive(Debug, Clone)]
pub struct WriterContext {
    pub subtask_index: usize,
    pub batch_size: usize,
    /// Max parallelism of the consuming operator (key groups).
    pub max_parallelism: usize,
    /// The producing task's counters.
    pub metrics: Arc<TaskMetrics>,
}

impl WriterContext {
    /// A writer over `channels` that counts into the task's metrics.
    fn writer<T: Data, S: ChannelSelector<T> + 'static>(
        &self,
        channels: Vec<OutputChannel<T>>,
        selector: S,
        broadcast: bool,
    ) -> Box<dyn Any + Send> {
        let w = PartitionWriter::new(channels, selector, self.batch_size, broadcast);
        boxed(w.with_metrics(self.metrics.clone()))
    }
}

/// Moves record `i` of `values` to the end of `buffers[routes[i]]`, for every `i`; `counts[c]`
/// is the number of records routed to channel `c`, and every buffer has room for them.
///
/// The records are copied straight from the memory of `values` into the buffers'. Moved in safe
/// code, each record would pass through an `Option` on the stack (`vec::IntoIter::next`), and
/// for a record type with a niche (a `CompactString` key, say) rustc copies such temporaries in
/// overlapping pieces that defeat store-to-load forwarding: that loop stalled on every record
/// and cost more than hashing the key (BENCHMARKS.md, "Event time and windows").
fn scatter<T>(mut values: Vec<T>, routes: &[u32], counts: &[usize], buffers: &mut [Batch<T>]) {
    assert_eq!(values.len(), routes.len(), "one route per record");
    assert!(
        buffers.iter().zip(counts).all(|(b, &c)| b.values.capacity() - b.values.len() >= c),
        "room in every buffer"
    );
    assert_eq!(counts.iter().sum::<usize>(), routes.len(), "counts match the routes");
    let src = values.as_ptr();
    // SAFETY: the records of `values` are handed over to the buffers: its length is set to 0
    // first, so it frees its memory without dropping them, and each of its `routes.len()`
    // initialized records is read exactly once (`src.add(i)`, `i < routes.len()`). Every
    // route is a valid index (each was counted into `counts`, whose length is the number of
    // buffers), and each buffer receives exactly `counts[c]` records, for which it has spare
    // capacity (asserted above), so every write goes to reserved, unused memory, and `set_len`
    // covers only written slots. Nothing in the loop can panic.
    unsafe {
        values.set_len(0);
        for (i, &ch) in routes.iter().enumerate() {
            let buf = &mut buffers.get_unchecked_mut(ch as usize).values;
            let len = buf.len();
            std::ptr::copy_nonoverlapping(src.add(i), buf.as_mut_ptr().add(len), 1);
            buf.set_len(len + 1);
        }
    }
}

/// Type-erased maker of partition writers for one exchange, created by typed API code.
pub trait PartitionerFactory: Send + Sync {
    fn kind(&self) -> PartitionKind;

    /// `senders` holds `ChannelSender<T>`s or `RemoteSender<T>`s; returns a
    /// `Box<dyn Output<T>>`.
    fn create_writer(
        &self,
        resolved: PartitionKind,
        senders: Vec<Box<dyn Any + Send>>,
        ctx: &WriterContext,
    ) -> Result<Box<dyn Any + Send>>;
}

/// Unpacks the senders of one exchange: local (`ChannelSender<T>`) or remote (`RemoteSender<T>`).
fn downcast_senders<T: Data>(senders: Vec<Box<dyn Any + Send>>) -> Result<Vec<OutputChannel<T>>> {
    senders
        .into_iter()
        .map(|s| match s.downcast::<ChannelSender<T>>() {
            Ok(local) => Ok(OutputChannel::Local(*local)),
            Err(s) => s
                .downcast::<RemoteSender<T>>()
                .map(|remote| OutputChannel::Remote(*remote))
                .map_err(|_| EddyError::InvalidJob("channel of the wrong record type".into())),
        })
        .collect()
}

fn boxed<T: Data>(w: impl Output<T> + 'static) -> Box<dyn Any + Send> {
    let out: Box<dyn Output<T>> = Box::new(w);
    Box::new(out)
}

/// Partitioners that need nothing but the record type.
pub struct BasicPartitioner<T> {
    kind: PartitionKind,
    _t: PhantomData<fn() -> T>,
}

impl<T: Data> BasicPartitioner<T> {
    pub fn new(kind: PartitionKind) -> Self {
        BasicPartitioner { kind, _t: PhantomData }
    }
}

impl<T: Data> PartitionerFactory for BasicPartitioner<T> {
    fn kind(&self) -> PartitionKind {
        self.kind
    }

    fn create_writer(
        &self,
        resolved: PartitionKind,
        senders: Vec<Box<dyn Any + Send>>,
        ctx: &WriterContext,
    ) -> Result<Box<dyn Any + Send>> {
        let ch = downcast_senders::<T>(senders)?;
        Ok(match resolved {
            PartitionKind::Broadcast => ctx.writer(ch, First, true),
            PartitionKind::Forward | PartitionKind::Global => ctx.writer(ch, First, false),
            PartitionKind::Shuffle => {
                let seed = 0x9e37_79b9_7f4a_7c15u64
                    ^ (ctx.subtask_index as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                ctx.writer(ch, Random(seed | 1), false)
            }
            // Rebalance, rescale; each producer starts at a different channel.
            _ => ctx.writer(ch, RoundRobin(ctx.subtask_index), false),
        })
    }
}

/// The keyed exchange of `key_by`.
pub struct KeyGroupPartitioner<T, F> {
    key: F,
    _t: PhantomData<fn() -> T>,
}

impl<T, F> KeyGroupPartitioner<T, F> {
    pub fn new(key: F) -> Self {
        KeyGroupPartitioner { key, _t: PhantomData }
    }
}

impl<T: Data, K: Key, F: Fn(&T) -> K + Clone + Send + Sync + 'static> PartitionerFactory
    for KeyGroupPartitioner<T, F>
{
    fn kind(&self) -> PartitionKind {
        PartitionKind::Hash
    }

    fn create_writer(
        &self,
        _: PartitionKind,
        senders: Vec<Box<dyn Any + Send>>,
        ctx: &WriterContext,
    ) -> Result<Box<dyn Any + Send>> {
        let ch = downcast_senders::<T>(senders)?;
        let sel = KeyGroupSelector::new(self.key.clone(), ctx.max_parallelism);
        Ok(ctx.writer(ch, sel, false))
    }
}

/// `partition_custom`: a user function from key and channel count to channel.
pub struct CustomPartitioner<T, F, P> {
    key: F,
    partitioner: P,
    _t: PhantomData<fn() -> T>,
}

impl<T, F, P> CustomPartitioner<T, F, P> {
    pub fn new(partitioner: P, key: F) -> Self {
        CustomPartitioner { key, partitioner, _t: PhantomData }
    }
}

impl<T, K, F, P> PartitionerFactory for CustomPartitioner<T, F, P>
where
    T: Data,
    K: 'static,
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    P: Fn(&K, usize) -> usize + Clone + Send + Sync + 'static,
{
    fn kind(&self) -> PartitionKind {
        PartitionKind::Custom
    }

    fn create_writer(
        &self,
        _: PartitionKind,
        senders: Vec<Box<dyn Any + Send>>,
        ctx: &WriterContext,
    ) -> Result<Box<dyn Any + Send>> {
        let ch = downcast_senders::<T>(senders)?;
        let sel = CustomSelector { key: self.key.clone(), partitioner: self.partitioner.clone() };
        Ok(ctx.writer(ch, sel, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_resolves_to_forward_only_at_equal_parallelism() {
        assert_eq!(PartitionKind::Default.resolve(2, 2), PartitionKind::Forward);
        assert_eq!(PartitionKind::Default.resolve(2, 3), PartitionKind::Rebalance);
        assert_eq!(PartitionKind::Hash.resolve(2, 2), PartitionKind::Hash);
    }

    #[test]
    fn pointwise_targets_cover_every_consumer_once() {
        for (up, down) in [(1, 4), (2, 4), (4, 2), (3, 2), (2, 3), (4, 4)] {
            let mut seen = vec![0; down];
            for i in 0..up {
                let t = pointwise_targets(up, down, i);
                assert!(!t.is_empty(), "{up}->{down}: producer {i} has no target");
                for j in t {
                    seen[j] += 1;
                }
            }
            if up <= down {
                assert!(seen.iter().all(|&c| c == 1), "{up}->{down}: {seen:?}");
            } else {
                assert!(seen.iter().all(|&c| c >= 1), "{up}->{down}: {seen:?}");
            }
        }
    }

    #[test]
    fn round_robin_visits_channels_in_turn() {
        let mut rr = RoundRobin(0);
        let picks: Vec<usize> =
            (0..6).map(|_| ChannelSelector::<u8>::select(&mut rr, &0, 3).unwrap()).collect();
        assert_eq!(picks, vec![1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn random_spreads_over_all_channels() {
        let mut r = Random(12345);
        let mut counts = [0; 4];
        for _ in 0..4000 {
            counts[ChannelSelector::<u8>::select(&mut r, &0, 4).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn key_group_selector_is_the_key_group_formula() {
        for max in [128, 100] {
            let mut s = KeyGroupSelector::new(|v: &String| v.clone(), max);
            for w in ["a", "b", "hello", "world", "a somewhat longer key of several words"] {
                let kg = assign_to_key_group(&w.to_string(), max);
                assert_eq!(s.select(&w.to_string(), 3).unwrap(), kg * 3 / max, "{w} of {max}");
            }
        }
    }

    #[test]
    fn a_keyed_writer_moves_every_record_once_to_its_key_groups_channel_with_its_timestamp() {
        use crate::channel::{channel, GateEvent, InputGate, JobSignals};
        let signals = Arc::new(JobSignals::default());
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| channel(64, signals.clone())).unzip();
        let outputs = senders.into_iter().map(OutputChannel::from).collect();
        let key = |v: &(String, u32)| v.0.clone();
        let mut writer = PartitionWriter::new(outputs, KeyGroupSelector::new(key, 128), 4, false);
        // Keys long enough to live on the heap: a record handed over twice would be freed twice,
        // which aborts the test.
        let record = |i: u32| (format!("a key long enough for the heap, number {}", i % 7), i);
        let mut with_ts = Batch::new();
        for i in 0..10 {
            with_ts.push_with_timestamp(record(i), 1000 + i as i64);
        }
        writer.emit_batch(with_ts).unwrap();
        writer.emit_batch(Batch::from_values((10..15).map(record).collect())).unwrap();
        let mut later = Batch::new();
        later.push_with_timestamp(record(15), 1015);
        writer.emit_batch(later).unwrap();
        writer.end_input().unwrap();

        let mut gate = InputGate::new(receivers);
        let mut got: Vec<(usize, (String, u32), i64)> = Vec::new();
        loop {
            match gate.next(std::time::Instant::now() + std::time::Duration::from_secs(5)).unwrap() {
                GateEvent::Element(ch, StreamElement::Records(b)) => {
                    got.extend(b.into_iter_with_timestamps().map(|(v, ts)| (ch, v, ts)))
                }
                GateEvent::Element(..) => {}
                GateEvent::Timeout => panic!("the writer did not flush"),
                GateEvent::Finished => break,
            }
        }
        got.sort_by_key(|(_, v, _)| v.1);
        assert_eq!(got.len(), 16, "{got:?}");
        for (i, (ch, v, ts)) in got.iter().enumerate() {
            let i = i as u32;
            assert_eq!(v, &record(i));
            assert_eq!(*ch, assign_to_key_group(&v.0, 128) * 3 / 128, "record {i}");
            let expected = if (10..15).contains(&i) { NO_TIMESTAMP } else { 1000 + i as i64 };
            assert_eq!(*ts, expected, "record {i}");
        }
    }

    #[test]
    fn custom_selector_rejects_channels_out_of_range() {
        let mut s = CustomSelector { key: |v: &u32| *v, partitioner: |k: &u32, _n: usize| *k as usize };
        assert_eq!(s.select(&1, 2).unwrap(), 1);
        let err = s.select(&5, 2).unwrap_err().to_string();
        assert!(err.contains("channel 5") && err.contains("only 2"), "{err}");
    }
}
