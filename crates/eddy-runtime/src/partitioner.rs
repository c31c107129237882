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
use eddy_core::{Batch, CheckpointBarrier, Data, EddyError, Key, Result, StreamElement};
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
}

impl<T: Data, S: ChannelSelector<T>> PartitionWriter<T, S> {
    pub fn new(channels: Vec<OutputChannel<T>>, selector: S, batch_size: usize, broadcast: bool) -> Self {
        let buffers = channels.iter().map(|_| Batch::new()).collect();
        let metrics = Arc::default();
        PartitionWriter { channels, buffers, selector, batch_size: batch_size.max(1), broadcast, metrics }
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
        let timestamps = std::mem::take(&mut batch.timestamps);
        if timestamps.is_empty() {
            for v in batch.values {
                let ch = self.selector.select(&v, n)?;
                let buf = &mut self.buffers[ch];
                buf.values.push(v);
                if buf.values.len() >= self.batch_size {
                    self.send_buffer(ch)?;
                }
            }
        } else {
            for (v, ts) in batch.values.into_iter().zip(timestamps) {
                let ch = self.selector.select(&v, n)?;
                let buf = &mut self.buffers[ch];
                buf.push_with_timestamp(v, ts);
                if buf.len() >= self.batch_size {
                    self.send_buffer(ch)?;
                }
            }
        }
        Ok(())
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
    fn custom_selector_rejects_channels_out_of_range() {
        let mut s = CustomSelector { key: |v: &u32| *v, partitioner: |k: &u32, _n: usize| *k as usize };
        assert_eq!(s.select(&1, 2).unwrap(), 1);
        let err = s.select(&5, 2).unwrap_err().to_string();
        assert!(err.contains("channel 5") && err.contains("only 2"), "{err}");
    }
}
