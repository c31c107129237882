//! [`DataStream`], [`KeyedStream`] and [`ConnectedStreams`]: the transformations of a program.
//!
//! Every method adds one operator to the environment's graph and returns the stream it
//! produces. Operator settings (`set_parallelism`, `name`, `uid`, chaining) apply to the
//! operator that produced the stream they are called on.

use std::marker::PhantomData;
use std::ops::AddAssign;
use std::sync::{Arc, Mutex};

use eddy_core::{Batch, Data, EddyError, Key, RecordDisplay, Result};
use eddy_runtime::graph::{NodeId, NodeKind, OneInputNode, StreamEdge, TwoInputNode, TypeOf};
use eddy_runtime::partitioner::{
    BasicPartitioner, CustomPartitioner, KeyGroupPartitioner, PartitionKind, PartitionerFactory,
};
use eddy_runtime::sink::{Sink, SinkContext, SinkOperator, SinkWriter};
use eddy_runtime::{ChainingStrategy, OneInputOperator, OperatorContext, TwoInputOperator};

use crate::broadcast::{BroadcastConnectedStream, BroadcastStream, Declared, KeyedBroadcastConnectedStream};
use crate::connectors::{PrintSink, TextFileSink};
use crate::env::StreamExecutionEnvironment;
use crate::functions::{
    CoProcessFunction, Collector, KeyedCoProcessFunction, KeyedProcessFunction, OutputTag, ProcessFunction,
    RichFilter, RichFilterFunction, RichFlatMap, RichFlatMapFunction, RichMap, RichMapFunction,
};
use crate::operator_state::{
    AsFlatMap, AsMap, AsProcess, CheckpointedFunction, CheckpointedFunctionOperator, FlatMapFunction,
    MapFunction,
};
use crate::operators::*;
use crate::state::MapStateDescriptor;
use crate::watermark::WatermarkStrategy;

/// One upstream output feeding the next operator, and how records are spread over its subtasks.
#[derive(Clone)]
pub(crate) struct Port {
    pub node: NodeId,
    pub side_tag: Option<String>,
    pub partitioner: Arc<dyn PartitionerFactory>,
}

/// A stream of records of type `T`.
pub struct DataStream<T> {
    pub(crate) env: StreamExecutionEnvironment,
    pub(crate) ports: Vec<Port>,
    pub(crate) _t: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream { env: self.env.clone(), ports: self.ports.clone(), _t: PhantomData }
    }
}

fn connect_ports(env: &StreamExecutionEnvironment, ports: &[Port], target: NodeId, input: usize) {
    let mut inner = env.inner.borrow_mut();
    for p in ports {
        inner.graph.add_edge(StreamEdge {
            source: p.node,
            side_tag: p.side_tag.clone(),
            target,
            input,
            partitioner: p.partitioner.clone(),
        });
    }
}

impl<T: Data> DataStream<T> {
    /// The environment this stream belongs to.
    pub fn env(&self) -> &StreamExecutionEnvironment {
        &self.env
    }

    pub(crate) fn derive<U: Data>(&self, node: NodeId) -> DataStream<U> {
        DataStream {
            env: self.env.clone(),
            ports: vec![Port {
                node,
                side_tag: None,
                partitioner: Arc::new(BasicPartitioner::<U>::new(PartitionKind::Default)),
            }],
            _t: PhantomData,
        }
    }

    /// Adds a one-input operator made per subtask by `make`.
    pub fn transform<Op, M>(&self, name: &str, make: M) -> DataStream<Op::Out>
    where
        Op: OneInputOperator<In = T>,
        M: Fn(&OperatorContext) -> Result<Op> + Send + Sync + 'static,
    {
        let kind = NodeKind::OneInput(Arc::new(OneInputNode::new(make)));
        let node = self.env.add_node(name, kind, TypeOf::<Op::Out>::arc(), false);
        connect_ports(&self.env, &self.ports, node, 0);
        self.derive(node)
    }

    /// Applies `f` to every record.
    pub fn map<U: Data, F>(&self, f: F) -> DataStream<U>
    where
        F: FnMut(T) -> U + Clone + Send + Sync + 'static,
    {
        self.transform("Map", move |_| Ok(MapOperator { f: f.clone(), _t: PhantomData }))
    }

    /// Emits zero or more records per input record through the collector.
    ///
    /// ```
    /// use eddy::prelude::*;
    /// let env = StreamExecutionEnvironment::local().with_parallelism(1);
    /// let words = env
    ///     .from_collection(vec!["to be".to_string(), "or not".to_string()])
    ///     .flat_map(|line: String, out: &mut Collector<String>| {
    ///         for w in line.split_whitespace() { out.collect(w.to_string()) }
    ///     })
    ///     .execute_and_collect()
    ///     .unwrap();
    /// assert_eq!(words, vec!["to", "be", "or", "not"]);
    /// ```
    pub fn flat_map<U: Data, F>(&self, f: F) -> DataStream<U>
    where
        F: FnMut(T, &mut Collector<U>) + Clone + Send + Sync + 'static,
    {
        self.transform("Flat Map", move |_| Ok(FlatMapOperator { f: f.clone(), _t: PhantomData }))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F>(&self, f: F) -> DataStream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + Sync + 'static,
    {
        self.transform("Filter", move |_| Ok(FilterOperator { f: f.clone(), _t: PhantomData }))
    }

    /// Applies a [`ProcessFunction`], which may also write to side outputs.
    pub fn process<U: Data, P: ProcessFunction<T, U>>(&self, f: P) -> DataStream<U> {
        self.transform("Process", move |_| Ok(ProcessOperator { f: f.clone(), _t: PhantomData }))
    }

    /// Assigns event timestamps and generates watermarks, with the parallelism of the input.
    pub fn assign_timestamps_and_watermarks(&self, strategy: WatermarkStrategy<T>) -> DataStream<T> {
        let s = self.transform("Timestamps/Watermarks", move |ctx| Ok(strategy.operator(ctx)));
        self.env.inner.borrow_mut().graph.node_mut(s.ports[0].node).inherit_parallelism = true;
        s
    }

    /// The records written to side output `tag` by the operator that produced this stream.
    pub fn get_side_output<X: Data>(&self, tag: &OutputTag<X>) -> DataStream<X> {
        let node = self.single_node("get_side_output");
        self.env.inner.borrow_mut().graph.add_side_output_type(node, tag.id(), TypeOf::<X>::arc());
        DataStream {
            env: self.env.clone(),
            ports: vec![Port {
                node,
                side_tag: Some(tag.id().to_string()),
                partitioner: Arc::new(BasicPartitioner::<X>::new(PartitionKind::Default)),
            }],
            _t: PhantomData,
        }
    }

    /// Partitions by key: records with equal keys go to the same subtask (by key group).
    pub fn key_by<K: Key, F>(&self, key: F) -> KeyedStream<T, K, F>
    where
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        let p: Arc<dyn PartitionerFactory> = Arc::new(KeyGroupPartitioner::<T, F>::new(key.clone()));
        KeyedStream { stream: self.with_partitioner(p), key, _k: PhantomData }
    }

    /// The records of this stream and of `other`, in one stream.
    pub fn union(&self, other: &DataStream<T>) -> DataStream<T> {
        let mut ports = self.ports.clone();
        ports.extend(other.ports.iter().cloned());
        DataStream { env: self.env.clone(), ports, _t: PhantomData }
    }

    /// Pairs this stream with another for a two-input operator ([`ConnectedStreams`]), or with
    /// a [`BroadcastStream`] for the broadcast state pattern ([`BroadcastConnectedStream`]).
    pub fn connect<S: Connect<T>>(&self, other: &S) -> S::Connected {
        other.connect_to(self)
    }

    /// Sends every record to every subtask of the operator it is connected to, which keeps the
    /// broadcast state `desc` (see [`crate::broadcast`]; more states with
    /// [`BroadcastStream::with_state`]).
    pub fn broadcast_with<UK: Key, UV: Data>(&self, desc: &MapStateDescriptor<UK, UV>) -> BroadcastStream<T> {
        BroadcastStream { stream: self.broadcast(), declared: vec![Declared::of(desc)] }
    }

    /// Applies a [`MapFunction`] with operator state ([`CheckpointedFunction`], see
    /// [`crate::operator_state`]).
    pub fn map_checkpointed<U: Data, F>(&self, f: F) -> DataStream<U>
    where
        F: MapFunction<T, U> + CheckpointedFunction,
    {
        self.transform("Map", move |ctx| Ok(CheckpointedFunctionOperator::new(AsMap(f.clone()), ctx)))
    }

    /// Applies a [`FlatMapFunction`] with operator state ([`CheckpointedFunction`]).
    pub fn flat_map_checkpointed<U: Data, F>(&self, f: F) -> DataStream<U>
    where
        F: FlatMapFunction<T, U> + CheckpointedFunction,
    {
        self.transform("Flat Map", move |ctx| {
            Ok(CheckpointedFunctionOperator::new(AsFlatMap(f.clone()), ctx))
        })
    }

    /// Applies a [`ProcessFunction`] with operator state ([`CheckpointedFunction`]).
    pub fn process_checkpointed<U: Data, P>(&self, f: P) -> DataStream<U>
    where
        P: ProcessFunction<T, U> + CheckpointedFunction,
    {
        self.transform("Process", move |ctx| Ok(CheckpointedFunctionOperator::new(AsProcess(f.clone()), ctx)))
    }

    pub(crate) fn with_partitioner(&self, p: Arc<dyn PartitionerFactory>) -> DataStream<T> {
        let ports = self.ports.iter().map(|port| Port { partitioner: p.clone(), ..port.clone() }).collect();
        DataStream { env: self.env.clone(), ports, _t: PhantomData }
    }

    fn partition(&self, kind: PartitionKind) -> DataStream<T> {
        self.with_partitioner(Arc::new(BasicPartitioner::<T>::new(kind)))
    }

    /// Subtask i sends to subtask i of the next operator (parallelism must match).
    pub fn forward(&self) -> DataStream<T> {
        self.partition(PartitionKind::Forward)
    }
    /// Round-robin over all subtasks of the next operator.
    pub fn rebalance(&self) -> DataStream<T> {
        self.partition(PartitionKind::Rebalance)
    }
    /// Round-robin over a local subset of the next operator's subtasks.
    pub fn rescale(&self) -> DataStream<T> {
        self.partition(PartitionKind::Rescale)
    }
    /// Uniformly at random.
    pub fn shuffle(&self) -> DataStream<T> {
        self.partition(PartitionKind::Shuffle)
    }
    /// Every record to every subtask.
    pub fn broadcast(&self) -> DataStream<T> {
        self.partition(PartitionKind::Broadcast)
    }
    /// Everything to the first subtask.
    pub fn global(&self) -> DataStream<T> {
        self.partition(PartitionKind::Global)
    }

    /// Chooses the subtask with `partitioner(key, number_of_subtasks)`.
    pub fn partition_custom<K: 'static, P, F>(&self, partitioner: P, key: F) -> DataStream<T>
    where
        P: Fn(&K, usize) -> usize + Clone + Send + Sync + 'static,
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        self.with_partitioner(Arc::new(CustomPartitioner::<T, F, P>::new(partitioner, key)))
    }

    fn single_node(&self, what: &str) -> NodeId {
        if self.ports.len() != 1 || self.ports[0].side_tag.is_some() {
            self.env.record_error(EddyError::InvalidJob(format!(
                "{what} applies to the output of one operator, not to a union or side output"
            )));
        }
        self.ports[0].node
    }

    fn configure(self, what: &str, f: impl FnOnce(&mut eddy_runtime::graph::StreamNode)) -> Self {
        let node = self.single_node(what);
        f(self.env.inner.borrow_mut().graph.node_mut(node));
        self
    }

    /// Parallelism of the operator that produced this stream.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.configure("set_parallelism", |n| n.parallelism = Some(parallelism))
    }
    /// Max parallelism (number of key groups) of the operator that produced this stream.
    pub fn set_max_parallelism(self, max_parallelism: usize) -> Self {
        self.configure("set_max_parallelism", |n| n.max_parallelism = Some(max_parallelism))
    }
    /// Name shown in plans, logs and errors.
    pub fn name(self, name: &str) -> Self {
        let name = name.to_string();
        self.configure("name", move |n| {
            n.name = if matches!(n.kind, NodeKind::Source(_)) { format!("Source: {name}") } else { name }
        })
    }
    /// A stable id for the operator (matches state across program versions).
    pub fn uid(self, uid: &str) -> Self {
        let uid = uid.to_string();
        self.configure("uid", move |n| n.uid = Some(uid))
    }
    /// Runs the operator in a task of its own.
    pub fn disable_chaining(self) -> Self {
        self.configure("disable_chaining", |n| n.chaining = ChainingStrategy::Never)
    }
    /// Starts a new chain at this operator (it may still chain with what follows).
    pub fn start_new_chain(self) -> Self {
        self.configure("start_new_chain", |n| n.chaining = ChainingStrategy::Head)
    }

    /// Writes records to a sink (Flink's `sinkTo`).
    pub fn sink_to<S: Sink<T>>(&self, sink: S, name: &str) -> DataStreamSink {
        let sink = Arc::new(sink);
        let s = self.transform(&format!("Sink: {name}"), move |ctx| SinkOperator::new(sink.as_ref(), ctx));
        DataStreamSink { stream: s }
    }

    /// Prints records to standard output as `N> record` (N = subtask + 1, when parallel).
    pub fn print(&self) -> DataStreamSink
    where
        T: RecordDisplay,
    {
        self.sink_to(PrintSink::stdout(), "Print to Std. Out")
    }

    /// Prints records to standard error, like [`print`](Self::print).
    pub fn print_to_err(&self) -> DataStreamSink
    where
        T: RecordDisplay,
    {
        self.sink_to(PrintSink::stderr(), "Print to Std. Err")
    }

    /// Writes records as lines to `dir/part-<subtask>-0`, one file per subtask.
    pub fn write_as_text(&self, dir: impl Into<std::path::PathBuf>) -> DataStreamSink
    where
        T: RecordDisplay,
    {
        self.sink_to(TextFileSink::new(dir.into()), "Text File Sink")
    }

    /// Collects this stream's records in memory when the job runs (for tests).
    pub fn collect_to_vec(&self) -> CollectedRecords<T> {
        self.env.inner.borrow_mut().collect_sinks += 1;
        let records = CollectedRecords { records: Arc::new(Mutex::new(Vec::new())) };
        self.sink_to(records.clone(), "Collect Sink");
        records
    }

    /// Runs the job and returns all records of this stream (Flink's `executeAndCollect`).
    pub fn execute_and_collect(&self) -> Result<Vec<T>> {
        let records = self.collect_to_vec();
        self.env.execute("collect")?;
        Ok(records.take())
    }
}

/// The records a [`DataStream::collect_to_vec`] sink received.
pub struct CollectedRecords<T> {
    records: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectedRecords<T> {
    fn clone(&self) -> Self {
        CollectedRecords { records: self.records.clone() }
    }
}

impl<T> CollectedRecords<T> {
    /// Takes the records received so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<T: Data> Sink<T> for CollectedRecords<T> {
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<T: Data> SinkWriter<T> for CollectedRecords<T> {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        let mut v = batch.values;
        self.records.lock().unwrap_or_else(|p| p.into_inner()).append(&mut v);
        Ok(())
    }
}

/// The end of a stream: a sink, with its operator settings.
pub struct DataStreamSink {
    stream: DataStream<()>,
}

impl DataStreamSink {
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        DataStreamSink { stream: self.stream.set_parallelism(parallelism) }
    }
    pub fn name(self, name: &str) -> Self {
        DataStreamSink { stream: self.stream.name(name) }
    }
    pub fn uid(self, uid: &str) -> Self {
        DataStreamSink { stream: self.stream.uid(uid) }
    }
    pub fn disable_chaining(self) -> Self {
        DataStreamSink { stream: self.stream.disable_chaining() }
    }
}

/// What [`DataStream::connect`] pairs a stream of `T` with.
pub trait Connect<T> {
    /// The connected streams.
    type Connected;
    fn connect_to(&self, first: &DataStream<T>) -> Self::Connected;
}

impl<T: Data, U: Data> Connect<T> for DataStream<U> {
    type Connected = ConnectedStreams<T, U>;
    fn connect_to(&self, first: &DataStream<T>) -> ConnectedStreams<T, U> {
        ConnectedStreams { first: first.clone(), second: self.clone() }
    }
}

impl<T: Data, B: Data> Connect<T> for BroadcastStream<B> {
    type Connected = BroadcastConnectedStream<T, B>;
    fn connect_to(&self, first: &DataStream<T>) -> BroadcastConnectedStream<T, B> {
        BroadcastConnectedStream { main: first.clone(), broadcast: self.clone() }
    }
}

/// A stream partitioned by key (Flink's `KeyedStream`).
pub struct KeyedStream<T, K, F> {
    /// The input, partitioned by key.
    pub(crate) stream: DataStream<T>,
    pub(crate) key: F,
    pub(crate) _k: PhantomData<fn() -> K>,
}

impl<T: Data, K: Key, F> KeyedStream<T, K, F>
where
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    /// The stream, partitioned by key, for further transformations.
    pub fn as_stream(&self) -> &DataStream<T> {
        &self.stream
    }

    fn keyed_aggregate<A: Aggregator<T>>(&self, name: &str, agg: A) -> DataStream<T> {
        let input = self.combined(name, agg.clone()).unwrap_or_else(|| self.stream.clone());
        let key = self.key.clone();
        input.transform(name, move |ctx| AggregateOperator::new(key.clone(), agg.clone(), ctx))
    }

    /// The input with a combiner before the keyed exchange, when the input comes from a
    /// single operator: in BATCH mode each subtask then sends one partial result per key.
    /// Aggregations and reduce functions must therefore be associative, as in Flink's batch
    /// combiners.
    fn combined<A: Aggregator<T>>(&self, name: &str, agg: A) -> Option<DataStream<T>> {
        let [port] = &self.stream.ports[..] else { return None };
        if port.side_tag.is_some() {
            return None;
        }
        let unkeyed = DataStream::<T> {
            env: self.stream.env.clone(),
            ports: vec![Port {
                partitioner: Arc::new(BasicPartitioner::<T>::new(PartitionKind::Default)),
                ..port.clone()
            }],
            _t: PhantomData,
        };
        let key = self.key.clone();
        let combiner = unkeyed.transform(&format!("Combine: {name}"), move |ctx| {
            Ok(CombineOperator::new(key.clone(), agg.clone(), ctx.runtime_mode))
        });
        let node = combiner.ports[0].node;
        {
            let mut inner = self.stream.env.inner.borrow_mut();
            let n = inner.graph.node_mut(node);
            n.batch_only = true;
            n.inherit_parallelism = true;
        }
        Some(combiner.with_partitioner(self.stream.ports[0].partitioner.clone()))
    }

    fn keyed_reduce<R>(&self, name: &str, reduce: R) -> DataStream<T>
    where
        R: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.keyed_aggregate(name, ReduceWith(reduce))
    }

    fn keyed_in_place<R>(&self, update: R) -> DataStream<T>
    where
        R: FnMut(&mut T, T) + Clone + Send + Sync + 'static,
    {
        self.keyed_aggregate("Keyed Aggregation", InPlace(update))
    }

    /// Combines the records of each key: STREAMING emits every intermediate result, BATCH the
    /// final one per key.
    pub fn reduce<R>(&self, reduce: R) -> DataStream<T>
    where
        R: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.keyed_reduce("Keyed Reduce", reduce)
    }

    /// Running sum of a field per key; the other fields are those of the key's first record.
    ///
    /// ```
    /// use eddy::prelude::*;
    /// let env = StreamExecutionEnvironment::local().with_parallelism(1);
    /// let out = env
    ///     .from_collection(vec![("a".to_string(), 1), ("a".to_string(), 2)])
    ///     .key_by(|t: &(String, i32)| t.0.clone())
    ///     .sum(|t: &mut (String, i32)| &mut t.1)
    ///     .execute_and_collect()
    ///     .unwrap();
    /// assert_eq!(out, vec![("a".to_string(), 1), ("a".to_string(), 3)]);
    /// ```
    pub fn sum<N, A>(&self, field: A) -> DataStream<T>
    where
        N: AddAssign + Copy + 'static,
        A: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.keyed_in_place(move |acc: &mut T, mut v: T| {
            let add = *field(&mut v);
            *field(acc) += add;
        })
    }

    /// Running minimum of a field per key; other fields from the key's first record.
    pub fn min<N, A>(&self, field: A) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        A: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.keyed_in_place(move |acc: &mut T, mut v: T| {
            let x = *field(&mut v);
            if x < *field(acc) {
                *field(acc) = x;
            }
        })
    }

    /// Running maximum of a field per key; other fields from the key's first record.
    pub fn max<N, A>(&self, field: A) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        A: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.keyed_in_place(move |acc: &mut T, mut v: T| {
            let x = *field(&mut v);
            if x > *field(acc) {
                *field(acc) = x;
            }
        })
    }

    /// The record with the smallest field per key (the first one on ties).
    pub fn min_by<N, A>(&self, field: A) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        A: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.keyed_reduce(
            "Keyed Aggregation",
            move |mut acc, mut v| {
                if *field(&mut v) < *field(&mut acc) {
                    v
                } else {
                    acc
                }
            },
        )
    }

    /// The record with the largest field per key (the first one on ties).
    pub fn max_by<N, A>(&self, field: A) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        A: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.keyed_reduce(
            "Keyed Aggregation",
            move |mut acc, mut v| {
                if *field(&mut v) > *field(&mut acc) {
                    v
                } else {
                    acc
                }
            },
        )
    }

    /// Applies a [`KeyedProcessFunction`]: per-record logic with the key, keyed state and timers.
    pub fn process<U: Data, P: KeyedProcessFunction<K, T, U>>(&self, f: P) -> DataStream<U> {
        self.keyed_process("KeyedProcess", f)
    }

    /// Maps each record with the keyed state of its key (a [`RichMapFunction`], or a closure
    /// `|value, state: &mut KeyedStateStore<K>| -> Result<U>`). The state is checkpointed,
    /// restored and rescaled like a [`KeyedProcessFunction`]'s. For a map without state,
    /// use `as_stream().map(..)`.
    ///
    /// ```
    /// use eddy::prelude::*;
    ///
    /// let count = ValueStateDescriptor::<u64>::new("count");
    /// let out = StreamExecutionEnvironment::local()
    ///     .with_parallelism(2)
    ///     .from_collection(vec!['a', 'b', 'a', 'a'])
    ///     .key_by(|w: &char| *w)
    ///     .map(move |w: char, state: &mut KeyedStateStore<char>| {
    ///         let mut n = state.state(&count);
    ///         let seen = n.value().copied().unwrap_or(0) + 1;
    ///         n.update(seen);
    ///         Ok((w, seen))
    ///     })
    ///     .execute_and_collect()
    ///     .unwrap();
    /// assert!(out.contains(&('a', 3)) && out.contains(&('b', 1)));
    /// ```
    pub fn map<U: Data, M: RichMapFunction<K, T, U>>(&self, f: M) -> DataStream<U> {
        self.keyed_process("Map", RichMap(f))
    }

    /// Maps each record to any number of records, with the keyed state of its key (a
    /// [`RichFlatMapFunction`], or a closure `|value, state, out| -> Result<()>`).
    pub fn flat_map<U: Data, M: RichFlatMapFunction<K, T, U>>(&self, f: M) -> DataStream<U> {
        self.keyed_process("Flat Map", RichFlatMap(f))
    }

    /// Keeps the records for which a [`RichFilterFunction`] (or a closure `|&value, state| ->
    /// Result<bool>`) returns true, with the keyed state of their key.
    pub fn filter<M: RichFilterFunction<K, T>>(&self, f: M) -> DataStream<T> {
        self.keyed_process("Filter", RichFilter(f))
    }

    fn keyed_process<U: Data, P: KeyedProcessFunction<K, T, U>>(&self, name: &str, f: P) -> DataStream<U> {
        let key = self.key.clone();
        self.stream.transform(name, move |ctx| {
            Ok(KeyedProcessOperator {
                key: key.clone(),
                f: f.clone(),
                core: KeyedCore::new(ctx)?,
                _t: PhantomData,
            })
        })
    }

    /// Connects a [`BroadcastStream`], for a [`KeyedBroadcastProcessFunction`](crate::broadcast::KeyedBroadcastProcessFunction).
    pub fn connect<B: Data>(
        &self,
        broadcast: &BroadcastStream<B>,
    ) -> KeyedBroadcastConnectedStream<T, B, K, F> {
        KeyedBroadcastConnectedStream {
            main: self.stream.clone(),
            key: self.key.clone(),
            broadcast: broadcast.clone(),
            _k: PhantomData,
        }
    }

    /// The key selector of this stream.
    pub fn key_selector(&self) -> &F {
        &self.key
    }
}

/// Two streams joined for a two-input operator (Flink's `ConnectedStreams`).
pub struct ConnectedStreams<A, B> {
    pub(crate) first: DataStream<A>,
    pub(crate) second: DataStream<B>,
}

impl<A: Data, B: Data> ConnectedStreams<A, B> {
    /// Adds a two-input operator made per subtask by `make`.
    pub fn transform<Op, M>(&self, name: &str, make: M) -> DataStream<Op::Out>
    where
        Op: TwoInputOperator<In1 = A, In2 = B>,
        M: Fn(&OperatorContext) -> Result<Op> + Send + Sync + 'static,
    {
        let env = &self.first.env;
        let kind = NodeKind::TwoInput(Arc::new(TwoInputNode::new(make)));
        let node = env.add_node(name, kind, TypeOf::<Op::Out>::arc(), false);
        connect_ports(env, &self.first.ports, node, 0);
        connect_ports(env, &self.second.ports, node, 1);
        self.first.derive(node)
    }

    /// Maps each input with its own function into one output type.
    pub fn co_map<O: Data, F1, F2>(&self, f1: F1, f2: F2) -> DataStream<O>
    where
        F1: FnMut(A) -> O + Clone + Send + Sync + 'static,
        F2: FnMut(B) -> O + Clone + Send + Sync + 'static,
    {
        self.transform("Co-Map", move |_| {
            Ok(CoMapOperator { f1: f1.clone(), f2: f2.clone(), _t: PhantomData })
        })
    }

    /// Flat-maps each input with its own function.
    pub fn co_flat_map<O: Data, F1, F2>(&self, f1: F1, f2: F2) -> DataStream<O>
    where
        F1: FnMut(A, &mut Collector<O>) + Clone + Send + Sync + 'static,
        F2: FnMut(B, &mut Collector<O>) + Clone + Send + Sync + 'static,
    {
        self.transform("Co-Flat Map", move |_| {
            Ok(CoFlatMapOperator { f1: f1.clone(), f2: f2.clone(), _t: PhantomData })
        })
    }

    /// Applies a [`CoProcessFunction`].
    pub fn co_process<O: Data, P: CoProcessFunction<A, B, O>>(&self, f: P) -> DataStream<O> {
        self.transform("Co-Process", move |_| Ok(CoProcessOperator { f: f.clone(), _t: PhantomData }))
    }

    /// Partitions both inputs by key, so equal keys of both meet in the same subtask.
    pub fn key_by<K: Key, F1, F2>(&self, key1: F1, key2: F2) -> KeyedConnectedStreams<A, B, K, F1, F2>
    where
        F1: Fn(&A) -> K + Clone + Send + Sync + 'static,
        F2: Fn(&B) -> K + Clone + Send + Sync + 'static,
    {
        KeyedConnectedStreams {
            streams: ConnectedStreams {
                first: self.first.key_by(key1.clone()).stream,
                second: self.second.key_by(key2.clone()).stream,
            },
            key1,
            key2,
            _k: PhantomData,
        }
    }
}

/// Two streams connected and partitioned by the same key (`connect(..).key_by(..)`).
pub struct KeyedConnectedStreams<A, B, K, F1, F2> {
    streams: ConnectedStreams<A, B>,
    key1: F1,
    key2: F2,
    _k: PhantomData<fn() -> K>,
}

impl<A: Data, B: Data, K: Key, F1, F2> KeyedConnectedStreams<A, B, K, F1, F2>
where
    F1: Fn(&A) -> K + Clone + Send + Sync + 'static,
    F2: Fn(&B) -> K + Clone + Send + Sync + 'static,
{
    /// The partitioned streams, for operators that do not need the key.
    pub fn as_connected(&self) -> &ConnectedStreams<A, B> {
        &self.streams
    }

    pub fn co_map<O: Data, M1, M2>(&self, f1: M1, f2: M2) -> DataStream<O>
    where
        M1: FnMut(A) -> O + Clone + Send + Sync + 'static,
        M2: FnMut(B) -> O + Clone + Send + Sync + 'static,
    {
        self.streams.co_map(f1, f2)
    }

    pub fn co_flat_map<O: Data, M1, M2>(&self, f1: M1, f2: M2) -> DataStream<O>
    where
        M1: FnMut(A, &mut Collector<O>) + Clone + Send + Sync + 'static,
        M2: FnMut(B, &mut Collector<O>) + Clone + Send + Sync + 'static,
    {
        self.streams.co_flat_map(f1, f2)
    }

    pub fn co_process<O: Data, P: CoProcessFunction<A, B, O>>(&self, f: P) -> DataStream<O> {
        self.streams.co_process(f)
    }

    /// Applies a [`KeyedCoProcessFunction`]: keyed state and timers shared by both inputs.
    pub fn process<O: Data, P: KeyedCoProcessFunction<K, A, B, O>>(&self, f: P) -> DataStream<O> {
        let (key1, key2) = (self.key1.clone(), self.key2.clone());
        self.streams.transform("KeyedCoProcess", move |ctx| {
            Ok(KeyedCoProcessOperator {
                key1: key1.clone(),
                key2: key2.clone(),
                f: f.clone(),
                core: KeyedCore::new(ctx)?,
                _t: PhantomData,
            })
        })
    }
}
