//! The StreamGraph: what the user's program declared, one node per operator.
//!
//! Typed API code registers nodes with factories that hide their record types. Building a job
//! calls the factories once per subtask; the values they exchange are `Box<dyn Any>` holding
//! typed channel ends and outputs, downcast once when the job is built, never per record.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use eddy_core::{Data, EddyError, Result};

use crate::channel::{channel, ChannelReceiver, InputGate, JobSignals};
use crate::checkpoint::OperatorInit;
use crate::net::{ChannelId, DataConnection};
use crate::operator::{ChainedOperator, OneInputOperator, OperatorContext, TwoInputHead, TwoInputOperator};
use crate::output::{Emitter, ErasedSide, FanOut, Output};
use crate::partitioner::PartitionerFactory;
use crate::source::{
    decode_splits, Boundedness, ReaderContext, Source, SourceCoordinator, SourceCoordinatorHandle,
    SourceTask, SplitDistribution, StaticSplitAssigner,
};
use crate::task::{Invokable, OneInputTask, TaskMetrics, TwoInputTask};

pub type NodeId = usize;
pub type AnyBox = Box<dyn Any + Send>;
/// Records stored type-erased with their timestamps (test harnesses).
pub type AnyRecords = Arc<Mutex<Vec<(AnyBox, i64)>>>;

/// Whether an operator may share a task with its neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainingStrategy {
    /// Chain with the operator before and after when the exchange allows it.
    #[default]
    Always,
    /// `start_new_chain`: never chain to the operator before.
    Head,
    /// `disable_chaining`: a task of its own.
    Never,
}

/// A side output ready to be attached to an emitter (type-erased).
pub struct SideSlot(pub(crate) Box<dyn ErasedSide>);

/// Type-level operations for one record type, used while building a job.
pub trait StreamType: Send + Sync {
    fn type_name(&self) -> &'static str;
    /// A channel: (`ChannelSender<T>`, `ChannelReceiver<T>`).
    fn channel(&self, capacity: usize, signals: Arc<JobSignals>) -> (AnyBox, AnyBox);
    /// The producing end of remote channel `id`, whose consumer is across `conn`: a
    /// `RemoteSender<T>` for a partition writer, counting its bytes into `metrics`.
    fn remote_output(
        &self,
        id: ChannelId,
        conn: &DataConnection,
        signals: Arc<JobSignals>,
        metrics: Arc<TaskMetrics>,
    ) -> Result<AnyBox>;
    /// The consuming end of remote channel `id`, whose producer is across `conn`: a
    /// `ChannelReceiver<T>` for an input gate, holding `capacity` elements, counting its bytes
    /// into `metrics`.
    fn remote_input(
        &self,
        id: ChannelId,
        conn: &DataConnection,
        capacity: usize,
        metrics: Arc<TaskMetrics>,
    ) -> Result<AnyBox>;
    /// Combines several `Box<dyn Output<T>>` into one.
    fn fan_out(&self, outputs: Vec<AnyBox>) -> Result<AnyBox>;
    /// Wraps an output as a side output slot.
    fn side_slot(&self, output: AnyBox) -> Result<SideSlot>;
    /// A task reading `ChannelReceiver<T>`s into a chain head (`Box<dyn Output<T>>`), counting
    /// the records it reads into `metrics`, after replaying the `in_flight` records of an
    /// unaligned checkpoint.
    fn one_input_task(
        &self,
        name: String,
        head: AnyBox,
        inputs: Vec<AnyBox>,
        metrics: Arc<TaskMetrics>,
        in_flight: Option<&[u8]>,
    ) -> Result<Box<dyn Invokable>>;
    /// An output that stores each record, type-erased, with its timestamp (test harnesses).
    fn collecting_output(&self, into: AnyRecords) -> AnyBox;
}

/// Stores records type-erased (for test harnesses; slow on purpose: one box per record).
struct AnyCollector(AnyRecords);

impl<T: Data> Output<T> for AnyCollector {
    fn emit_batch(&mut self, batch: eddy_core::Batch<T>) -> Result<()> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (r, ts) in batch.into_iter_with_timestamps() {
            v.push((Box::new(r), ts));
        }
        Ok(())
    }
    fn emit_watermark(&mut self, _: i64) -> Result<()> {
        Ok(())
    }
    fn emit_idle(&mut self, _: bool) -> Result<()> {
        Ok(())
    }
    fn end_input(&mut self) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The [`StreamType`] of `T`.
pub struct TypeOf<T>(PhantomData<fn() -> T>);

impl<T: Data> TypeOf<T> {
    pub fn arc() -> Arc<dyn StreamType> {
        Arc::new(TypeOf::<T>(PhantomData))
    }
}

fn wrong_type(what: &str) -> EddyError {
    EddyError::InvalidJob(format!("internal: {what} of the wrong record type"))
}

/// Unpacks a `Box<dyn Output<T>>` from a type-erased box.
pub fn downcast_output<T: Data>(b: AnyBox) -> Result<Box<dyn Output<T>>> {
    b.downcast::<Box<dyn Output<T>>>().map(|b| *b).map_err(|_| wrong_type("output"))
}

/// Packs a `Box<dyn Output<T>>` into a type-erased box.
pub fn upcast_output<T: Data>(o: Box<dyn Output<T>>) -> AnyBox {
    Box::new(o)
}

fn downcast_receivers<T: Data>(inputs: Vec<AnyBox>) -> Result<Vec<ChannelReceiver<T>>> {
    inputs
        .into_iter()
        .map(|b| b.downcast::<ChannelReceiver<T>>().map(|b| *b).map_err(|_| wrong_type("channel")))
        .collect()
}

impl<T: Data> StreamType for TypeOf<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn channel(&self, capacity: usize, signals: Arc<JobSignals>) -> (AnyBox, AnyBox) {
        let (tx, rx) = channel::<T>(capacity, signals);
        (Box::new(tx), Box::new(rx))
    }

    fn remote_output(
        &self,
        id: ChannelId,
        conn: &DataConnection,
        signals: Arc<JobSignals>,
        metrics: Arc<TaskMetrics>,
    ) -> Result<AnyBox> {
        Ok(Box::new(conn.register_output_with::<T>(id, signals, Some(metrics))?))
    }

    fn remote_input(
        &self,
        id: ChannelId,
        conn: &DataConnection,
        capacity: usize,
        metrics: Arc<TaskMetrics>,
    ) -> Result<AnyBox> {
        Ok(Box::new(conn.register_input_with::<T>(id, capacity, Some(metrics))?))
    }

    fn fan_out(&self, outputs: Vec<AnyBox>) -> Result<AnyBox> {
        let outs = outputs.into_iter().map(downcast_output::<T>).collect::<Result<Vec<_>>>()?;
        Ok(upcast_output(FanOut::combine(outs)))
    }

    fn side_slot(&self, output: AnyBox) -> Result<SideSlot> {
        Ok(SideSlot(crate::output::side_output::<T>(downcast_output::<T>(output)?)))
    }

    fn one_input_task(
        &self,
        name: String,
        head: AnyBox,
        inputs: Vec<AnyBox>,
        metrics: Arc<TaskMetrics>,
        in_flight: Option<&[u8]>,
    ) -> Result<Box<dyn Invokable>> {
        let gate = InputGate::with_metrics(downcast_receivers::<T>(inputs)?, metrics);
        let task = OneInputTask::new(name, gate, downcast_output::<T>(head)?);
        Ok(Box::new(task.with_in_flight(in_flight)?))
    }

    fn collecting_output(&self, into: AnyRecords) -> AnyBox {
        upcast_output::<T>(Box::new(AnyCollector(into)))
    }
}

/// Builds the emitter of an operator from its erased outputs.
pub fn make_emitter<T: Data>(
    main: AnyBox,
    sides: Vec<(String, SideSlot)>,
    ctx: &OperatorContext,
) -> Result<Emitter<T>> {
    let mut e = Emitter::new(downcast_output::<T>(main)?, ctx.batch_size);
    for (tag, slot) in sides {
        e.add_side_slot(tag, slot.0);
    }
    Ok(e)
}

/// Makes the source of one node.
pub trait SourceFactory: Send + Sync {
    fn boundedness(&self) -> Boundedness;
    /// Creates the coordinator (the split enumerator) of the job, or of this process's
    /// readers when the job runs distributed; from `restored` (its checkpointed state) when
    /// the job restarts from a checkpoint.
    fn create_coordinator(
        &self,
        parallelism: usize,
        distribution: &SplitDistribution,
        restored: Option<&[u8]>,
    ) -> Result<Arc<dyn SourceCoordinatorHandle>>;
    /// Creates the task of one reader; `init` holds the reader's checkpointed splits when the
    /// job restarts from a checkpoint.
    fn create_task(
        &self,
        ctx: OperatorContext,
        coordinator: &Arc<dyn SourceCoordinatorHandle>,
        main: AnyBox,
        init: &OperatorInit,
    ) -> Result<Box<dyn Invokable>>;
}

/// The [`SourceFactory`] of a [`Source`].
pub struct SourceNode<S: Source>(pub Arc<S>);

impl<S: Source> SourceFactory for SourceNode<S> {
    fn boundedness(&self) -> Boundedness {
        self.0.boundedness()
    }

    fn create_coordinator(
        &self,
        parallelism: usize,
        distribution: &SplitDistribution,
        restored: Option<&[u8]>,
    ) -> Result<Arc<dyn SourceCoordinatorHandle>> {
        let enumerator = match restored {
            Some(bytes) => self.0.restore_enumerator(parallelism, decode_splits::<S::Split>(bytes)?)?,
            None => self.0.create_enumerator(parallelism)?,
        };
        let enumerator = match distribution {
            SplitDistribution::OnDemand => enumerator,
            SplitDistribution::Static { local } => {
                Box::new(StaticSplitAssigner::new(enumerator, parallelism, local.clone()))
            }
        };
        Ok(Arc::new(SourceCoordinator::new(enumerator, parallelism)))
    }

    fn create_task(
        &self,
        ctx: OperatorContext,
        coordinator: &Arc<dyn SourceCoordinatorHandle>,
        main: AnyBox,
        init: &OperatorInit,
    ) -> Result<Box<dyn Invokable>> {
        let coordinator = coordinator
            .clone()
            .as_any()
            .downcast::<SourceCoordinator<S::Split>>()
            .map_err(|_| wrong_type("split enumerator"))?;
        let rctx = ReaderContext {
            subtask_index: ctx.subtask_index,
            parallelism: ctx.parallelism,
            batch_size: ctx.batch_size,
        };
        let reader = ctx.guard(|| self.0.create_reader(&rctx))?;
        let out = downcast_output::<S::Output>(main)?;
        Ok(Box::new(SourceTask::new(reader, coordinator, out, ctx, init)?))
    }
}

/// Makes the operator of one one-input node, once per subtask.
pub trait OneInputFactory: Send + Sync {
    fn input_type(&self) -> Arc<dyn StreamType>;

    /// Returns the operator, restored from `init` and opened, as a `Box<dyn Output<In>>`.
    fn create_with_state(
        &self,
        ctx: &OperatorContext,
        main: AnyBox,
        sides: Vec<(String, SideSlot)>,
        init: OperatorInit,
    ) -> Result<AnyBox>;

    /// Returns a fresh operator (no checkpoint to restore) as a `Box<dyn Output<In>>`.
    fn create(&self, ctx: &OperatorContext, main: AnyBox, sides: Vec<(String, SideSlot)>) -> Result<AnyBox> {
        let init = OperatorInit::fresh(ctx.operator_name.as_str());
        self.create_with_state(ctx, main, sides, init)
    }
}

/// The [`OneInputFactory`] of operators made by a closure.
pub struct OneInputNode<Op, F> {
    make: F,
    _op: PhantomData<fn() -> Op>,
}

impl<Op, F> OneInputNode<Op, F> {
    pub fn new(make: F) -> Self {
        OneInputNode { make, _op: PhantomData }
    }
}

impl<Op, F> OneInputFactory for OneInputNode<Op, F>
where
    Op: OneInputOperator,
    F: Fn(&OperatorContext) -> Result<Op> + Send + Sync,
{
    fn input_type(&self) -> Arc<dyn StreamType> {
        TypeOf::<Op::In>::arc()
    }

    fn create_with_state(
        &self,
        ctx: &OperatorContext,
        main: AnyBox,
        sides: Vec<(String, SideSlot)>,
        init: OperatorInit,
    ) -> Result<AnyBox> {
        let emitter = make_emitter::<Op::Out>(main, sides, ctx)?;
        let op = ctx.guard(|| (self.make)(ctx))?;
        let chained: Box<dyn Output<Op::In>> =
            Box::new(ChainedOperator::open_with_state(op, emitter, ctx.clone(), init)?);
        Ok(upcast_output(chained))
    }
}

/// What a two-input task is built from, besides its context.
pub struct TwoInputParts {
    pub main: AnyBox,
    pub sides: Vec<(String, SideSlot)>,
    pub inputs1: Vec<AnyBox>,
    pub inputs2: Vec<AnyBox>,
    pub metrics: Arc<TaskMetrics>,
    pub init: OperatorInit,
}

/// Makes the task of one two-input node, once per subtask.
pub trait TwoInputFactory: Send + Sync {
    fn create_task(&self, ctx: &OperatorContext, parts: TwoInputParts) -> Result<Box<dyn Invokable>>;
}

/// The [`TwoInputFactory`] of operators made by a closure.
pub struct TwoInputNode<Op, F> {
    make: F,
    _op: PhantomData<fn() -> Op>,
}

impl<Op, F> TwoInputNode<Op, F> {
    pub fn new(make: F) -> Self {
        TwoInputNode { make, _op: PhantomData }
    }
}

impl<Op, F> TwoInputFactory for TwoInputNode<Op, F>
where
    Op: TwoInputOperator,
    F: Fn(&OperatorContext) -> Result<Op> + Send + Sync,
{
    fn create_task(&self, ctx: &OperatorContext, parts: TwoInputParts) -> Result<Box<dyn Invokable>> {
        let TwoInputParts { main, sides, inputs1, inputs2, metrics, init } = parts;
        let in_flight = init.in_flight.clone();
        let emitter = make_emitter::<Op::Out>(main, sides, ctx)?;
        let op = ctx.guard(|| (self.make)(ctx))?;
        let head = TwoInputHead::open_with_state(op, emitter, ctx.clone(), init)?;
        let g1 = InputGate::with_metrics(downcast_receivers::<Op::In1>(inputs1)?, metrics.clone());
        let g2 = InputGate::with_metrics(downcast_receivers::<Op::In2>(inputs2)?, metrics);
        Ok(Box::new(TwoInputTask::new(g1, g2, head).with_in_flight(in_flight.as_deref())?))
    }
}

/// What kind of operator a node is.
#[derive(Clone)]
pub enum NodeKind {
    Source(Arc<dyn SourceFactory>),
    OneInput(Arc<dyn OneInputFactory>),
    TwoInput(Arc<dyn TwoInputFactory>),
}

/// One operator of the program.
#[derive(Clone)]
pub struct StreamNode {
    pub id: NodeId,
    pub name: String,
    pub uid: Option<String>,
    /// Set by the user; `None` uses the job's default.
    pub parallelism: Option<usize>,
    pub max_parallelism: Option<usize>,
    /// A source that cannot run in parallel (collections, sockets).
    pub non_parallel: bool,
    pub chaining: ChainingStrategy,
    pub kind: NodeKind,
    /// The type of the main output.
    pub output_type: Arc<dyn StreamType>,
    /// Side outputs consumed downstream: tag and type.
    pub side_outputs: Vec<(String, Arc<dyn StreamType>)>,
    /// Runs only in BATCH mode (a pre-aggregating combiner); bypassed in STREAMING.
    pub batch_only: bool,
    /// Takes the parallelism of its input, so that it chains to it.
    pub inherit_parallelism: bool,
}

impl StreamNode {
    /// The type of the main output (`None`) or of side output `tag`.
    pub fn output_type_of(&self, tag: Option<&str>) -> Result<Arc<dyn StreamType>> {
        match tag {
            None => Ok(self.output_type.clone()),
            Some(tag) => {
                self.side_outputs.iter().find(|(t, _)| t == tag).map(|(_, ty)| ty.clone()).ok_or_else(|| {
                    EddyError::InvalidJob(format!("side output '{tag}' of '{}' has no type", self.name))
                })
            }
        }
    }
}

/// A connection from an output of one node to an input of another.
#[derive(Clone)]
pub struct StreamEdge {
    pub source: NodeId,
    /// `Some(tag)` when the edge carries a side output.
    pub side_tag: Option<String>,
    pub target: NodeId,
    /// 0, or 1 for the second input of a two-input operator.
    pub input: usize,
    pub partitioner: Arc<dyn PartitionerFactory>,
}

/// The whole program as declared.
#[derive(Clone, Default)]
pub struct StreamGraph {
    pub nodes: Vec<StreamNode>,
    pub edges: Vec<StreamEdge>,
}

impl StreamGraph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_node(&mut self, mut node: StreamNode) -> NodeId {
        let id = self.nodes.len();
        node.id = id;
        self.nodes.push(node);
        id
    }

    pub fn add_edge(&mut self, edge: StreamEdge) {
        self.edges.push(edge);
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut StreamNode {
        &mut self.nodes[id]
    }

    /// Every source is bounded (AUTOMATIC mode then runs as BATCH).
    pub fn all_sources_bounded(&self) -> bool {
        self.nodes.iter().all(|n| match &n.kind {
            NodeKind::Source(s) => s.boundedness() == Boundedness::Bounded,
            _ => true,
        })
    }

    /// The graph to run in STREAMING mode: every batch-only node is removed and its inputs are
    /// connected straight to its consumers, with the consumers' exchanges.
    pub fn without_batch_only_nodes(&self) -> StreamGraph {
        if !self.nodes.iter().any(|n| n.batch_only) {
            return self.clone();
        }
        let mut new_id = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::new();
        for node in self.nodes.iter().filter(|n| !n.batch_only) {
            new_id[node.id] = nodes.len();
            nodes.push(StreamNode { id: nodes.len(), ..node.clone() });
        }
        let mut edges = Vec::new();
        for e in self.edges.iter().filter(|e| !self.nodes[e.target].batch_only) {
            if self.nodes[e.source].batch_only {
                for input in self.edges.iter().filter(|i| i.target == e.source) {
                    edges.push(StreamEdge {
                        source: new_id[input.source],
                        side_tag: input.side_tag.clone(),
                        target: new_id[e.target],
                        input: e.input,
                        partitioner: e.partitioner.clone(),
                    });
                }
            } else {
                edges.push(StreamEdge { source: new_id[e.source], target: new_id[e.target], ..e.clone() });
            }
        }
        StreamGraph { nodes, edges }
    }

    /// Registers that side output `tag` of `node` is consumed, with its type.
    pub fn add_side_output_type(&mut self, node: NodeId, tag: &str, ty: Arc<dyn StreamType>) {
        let n = &mut self.nodes[node];
        if !n.side_outputs.iter().any(|(t, _)| t == tag) {
            n.side_outputs.push((tag.to_string(), ty));
        }
    }
}
