//! The JobGraph: the StreamGraph with operators fused into chains.
//!
//! An edge is chained when it is a forward exchange between operators of equal parallelism,
//! its target has no other input, and neither side forbids chaining. Every chain becomes one
//! [`JobVertex`]; every vertex runs as `parallelism` tasks. Chains are trees: an operator may
//! feed several chained operators, but a chained operator has exactly one input.

use std::hash::Hasher;

use eddy_core::config::RuntimeMode;
use eddy_core::keygroup::{default_max_parallelism, StableHasher, UPPER_BOUND_MAX_PARALLELISM};
use eddy_core::{EddyError, Result};
use serde_json::{json, Value};

use crate::graph::{ChainingStrategy, NodeId, NodeKind, StreamGraph};
use crate::partitioner::PartitionKind;

/// One chain: a set of operators that run together in one task per subtask.
#[derive(Debug, Clone)]
pub struct JobVertex {
    pub index: usize,
    /// A 32-hex-digit id, stable for the same program (from the head's uid or position).
    pub id: String,
    /// `Source: a -> Map -> Filter`.
    pub name: String,
    /// The operators, head first, in graph order.
    pub nodes: Vec<NodeId>,
    pub parallelism: usize,
    pub max_parallelism: usize,
}

/// An exchange between two chains.
#[derive(Debug, Clone)]
pub struct JobEdge {
    /// Index into the stream graph's edges.
    pub stream_edge: usize,
    pub source_vertex: usize,
    pub target_vertex: usize,
    pub kind: PartitionKind,
}

#[derive(Debug, Clone)]
pub struct JobGraph {
    pub job_name: String,
    pub runtime_mode: RuntimeMode,
    pub vertices: Vec<JobVertex>,
    pub edges: Vec<JobEdge>,
    /// Per stream edge: runs inside a chain.
    pub chained: Vec<bool>,
    /// Per stream edge: the exchange kind after resolving `Default`.
    pub edge_kind: Vec<PartitionKind>,
    /// Per node: its vertex, parallelism and max parallelism.
    pub node_vertex: Vec<usize>,
    pub node_parallelism: Vec<usize>,
    pub node_max_parallelism: Vec<usize>,
}

/// Settings that shape the job graph.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    pub job_name: String,
    pub default_parallelism: usize,
    pub max_parallelism: Option<usize>,
    /// STREAMING or BATCH (AUTOMATIC already resolved).
    pub runtime_mode: RuntimeMode,
}

/// The stable id of an operator: 32 hex digits hashed from its uid, or, without one, from its
/// position and name in the graph. Checkpointed state is addressed by it, so an operator finds
/// its state again in a restarted job (and, with a uid, in a changed program).
pub fn operator_id(graph: &StreamGraph, node: NodeId) -> String {
    let n = &graph.nodes[node];
    let basis = match &n.uid {
        Some(uid) => format!("uid:{uid}"),
        None => format!("node:{node}:{}", n.name),
    };
    let mut a = StableHasher::new();
    a.write(basis.as_bytes());
    let mut b = StableHasher::new();
    b.write_u8(0x5a);
    b.write(basis.as_bytes());
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

impl JobGraph {
    pub fn build(graph: &StreamGraph, settings: &GraphSettings) -> Result<JobGraph> {
        if settings.default_parallelism == 0 {
            return Err(EddyError::InvalidJob("parallelism must be at least 1".into()));
        }
        let n = graph.nodes.len();
        let mut par = Vec::with_capacity(n);
        let mut max_par = Vec::with_capacity(n);
        for node in &graph.nodes {
            let inherited = match node.inherit_parallelism {
                true => graph.edges.iter().find(|e| e.target == node.id).map(|e| par[e.source]),
                false => None,
            };
            let p = match (node.non_parallel, inherited.or(node.parallelism)) {
                (true, Some(p)) if p != 1 => {
                    return Err(EddyError::InvalidJob(format!(
                        "'{}' is not a parallel operator; its parallelism must be 1, not {p}",
                        node.name
                    )))
                }
                (true, _) => 1,
                (false, Some(0)) => {
                    return Err(EddyError::InvalidJob(format!(
                        "parallelism of '{}' must be at least 1",
                        node.name
                    )))
                }
                (false, Some(p)) => p,
                (false, None) => settings.default_parallelism,
            };
            let mp = node
                .max_parallelism
                .or(settings.max_parallelism)
                .unwrap_or_else(|| default_max_parallelism(p));
            if mp == 0 || mp > UPPER_BOUND_MAX_PARALLELISM {
                return Err(EddyError::InvalidJob(format!(
                    "max parallelism of '{}' must be in 1..={UPPER_BOUND_MAX_PARALLELISM}, not {mp}",
                    node.name
                )));
            }
            if p > mp {
                return Err(EddyError::InvalidJob(format!(
                    "parallelism {p} of '{}' exceeds its max parallelism {mp}",
                    node.name
                )));
            }
            par.push(p);
            max_par.push(mp);
        }

        let mut in_degree = vec![0usize; n];
        for e in &graph.edges {
            if e.source >= e.target {
                return Err(EddyError::InvalidJob("edges must point forward in the graph".into()));
            }
            in_degree[e.target] += 1;
        }

        let mut edge_kind = Vec::with_capacity(graph.edges.len());
        let mut chained = Vec::with_capacity(graph.edges.len());
        for e in &graph.edges {
            let (pu, pd) = (par[e.source], par[e.target]);
            let declared = e.partitioner.kind();
            if declared == PartitionKind::Forward && pu != pd {
                return Err(EddyError::InvalidJob(format!(
                    "forward partitioning does not allow a change of parallelism: '{}' ({pu}) -> '{}' ({pd}); use rebalance or rescale",
                    graph.nodes[e.source].name, graph.nodes[e.target].name
                )));
            }
            let kind = declared.resolve(pu, pd);
            let (src, dst) = (&graph.nodes[e.source], &graph.nodes[e.target]);
            let chain = kind == PartitionKind::Forward
                && pu == pd
                && in_degree[e.target] == 1
                && matches!(dst.kind, NodeKind::OneInput(_))
                && dst.chaining == ChainingStrategy::Always
                && src.chaining != ChainingStrategy::Never;
            edge_kind.push(kind);
            chained.push(chain);
        }

        // Nodes come in topological order (edges point forward), so a node's chain is known
        // once its single chained input has been placed.
        let mut node_vertex = vec![usize::MAX; n];
        let mut vertices: Vec<JobVertex> = Vec::new();
        for id in 0..n {
            let chained_in = graph.edges.iter().enumerate().find(|(i, e)| e.target == id && chained[*i]);
            match chained_in {
                Some((_, e)) => {
                    let v = node_vertex[e.source];
                    node_vertex[id] = v;
                    vertices[v].nodes.push(id);
                }
                None => {
                    node_vertex[id] = vertices.len();
                    vertices.push(JobVertex {
                        index: vertices.len(),
                        // A vertex is known by its head operator's id.
                        id: operator_id(graph, id),
                        name: String::new(),
                        nodes: vec![id],
                        parallelism: par[id],
                        max_parallelism: max_par[id],
                    });
                }
            }
        }
        for v in &mut vertices {
            v.name = v.nodes.iter().map(|&i| graph.nodes[i].name.as_str()).collect::<Vec<_>>().join(" -> ");
        }

        let edges = graph
            .edges
            .iter()
            .enumerate()
            .filter(|(i, _)| !chained[*i])
            .map(|(i, e)| JobEdge {
                stream_edge: i,
                source_vertex: node_vertex[e.source],
                target_vertex: node_vertex[e.target],
                kind: edge_kind[i],
            })
            .collect();

        Ok(JobGraph {
            job_name: settings.job_name.clone(),
            runtime_mode: settings.runtime_mode,
            vertices,
            edges,
            chained,
            edge_kind,
            node_vertex,
            node_parallelism: par,
            node_max_parallelism: max_par,
        })
    }

    /// The plan as JSON in the shape of Flink's `/jobs/:jobid/plan`, plus the chained operators.
    pub fn to_plan_json(&self, graph: &StreamGraph, job_id: &str) -> Value {
        let nodes: Vec<Value> = self
            .vertices
            .iter()
            .map(|v| {
                let inputs: Vec<Value> = self
                    .edges
                    .iter()
                    .filter(|e| e.target_vertex == v.index)
                    .enumerate()
                    .map(|(num, e)| {
                        let se = &graph.edges[e.stream_edge];
                        let mut input = json!({
                            "num": num,
                            "id": self.vertices[e.source_vertex].id,
                            "ship_strategy": e.kind.ship_strategy(),
                            "exchange": "pipelined_bounded",
                            "input": se.input,
                        });
                        if let Some(tag) = &se.side_tag {
                            input["side_output"] = json!(tag);
                        }
                        input
                    })
                    .collect();
                let operators: Vec<Value> = v
                    .nodes
                    .iter()
                    .map(|&i| {
                        let node = &graph.nodes[i];
                        json!({
                            "id": i,
                            "name": node.name,
                            "uid": node.uid,
                            "parallelism": self.node_parallelism[i],
                        })
                    })
                    .collect();
                json!({
                    "id": v.id,
                    "parallelism": v.parallelism,
                    "max_parallelism": v.max_parallelism,
                    "operator": "",
                    "operator_strategy": "",
                    "description": v.name,
                    "chain": operators,
                    "inputs": inputs,
                    "optimizer_properties": {},
                })
            })
            .collect();
        json!({
            "jid": job_id,
            "name": self.job_name,
            "type": self.runtime_mode.as_str(),
            "nodes": nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::graph::{
        AnyBox, OneInputFactory, SideSlot, SourceFactory, StreamEdge, StreamNode, StreamType, TypeOf,
    };
    use crate::operator::OperatorContext;
    use crate::partitioner::{BasicPartitioner, PartitionerFactory};
    use crate::source::Boundedness;
    use crate::task::Invokable;

    /// Factories that are never called: chaining only looks at the graph's shape.
    struct Shape;
    impl OneInputFactory for Shape {
        fn input_type(&self) -> Arc<dyn StreamType> {
            TypeOf::<u8>::arc()
        }
        fn create_with_state(
            &self,
            _: &OperatorContext,
            _: AnyBox,
            _: Vec<(String, SideSlot)>,
            _: crate::checkpoint::OperatorInit,
        ) -> Result<AnyBox> {
            unreachable!("not built in chaining tests")
        }
    }
    impl SourceFactory for Shape {
        fn boundedness(&self) -> Boundedness {
            Boundedness::Bounded
        }
        fn create_coordinator(
            &self,
            _: usize,
            _: &crate::source::SplitDistribution,
            _: Option<&[u8]>,
        ) -> Result<Arc<dyn crate::source::SourceCoordinatorHandle>> {
            unreachable!("not built in chaining tests")
        }
        fn create_task(
            &self,
            _: OperatorContext,
            _: &Arc<dyn crate::source::SourceCoordinatorHandle>,
            _: AnyBox,
            _: &crate::checkpoint::OperatorInit,
        ) -> Result<Box<dyn Invokable>> {
            unreachable!("not built in chaining tests")
        }
    }

    struct G(StreamGraph);

    impl G {
        fn node(&mut self, name: &str, source: bool, parallelism: Option<usize>) -> NodeId {
            let kind =
                if source { NodeKind::Source(Arc::new(Shape)) } else { NodeKind::OneInput(Arc::new(Shape)) };
            self.0.add_node(StreamNode {
                id: 0,
                name: name.into(),
                uid: None,
                parallelism,
                max_parallelism: None,
                non_parallel: false,
                chaining: ChainingStrategy::Always,
                kind,
                output_type: TypeOf::<u8>::arc(),
                side_outputs: vec![],
                batch_only: false,
                inherit_parallelism: false,
            })
        }
        fn edge(&mut self, a: NodeId, b: NodeId, kind: PartitionKind) {
            let partitioner: Arc<dyn PartitionerFactory> = Arc::new(BasicPartitioner::<u8>::new(kind));
            self.0.add_edge(StreamEdge { source: a, side_tag: None, target: b, input: 0, partitioner });
        }
        fn build(&self) -> Result<JobGraph> {
            let s = GraphSettings {
                job_name: "t".into(),
                default_parallelism: 2,
                max_parallelism: None,
                runtime_mode: RuntimeMode::Streaming,
            };
            JobGraph::build(&self.0, &s)
        }
        fn names(&self) -> Vec<String> {
            self.build().unwrap().vertices.into_iter().map(|v| v.name).collect()
        }
    }

    fn pipeline() -> (G, [NodeId; 4]) {
        let mut g = G(StreamGraph::new());
        let src = g.node("Source", true, None);
        let map = g.node("Map", false, None);
        let filter = g.node("Filter", false, None);
        let sink = g.node("Sink", false, None);
        g.edge(src, map, PartitionKind::Default);
        g.edge(map, filter, PartitionKind::Default);
        (g, [src, map, filter, sink])
    }

    #[test]
    fn forward_edges_of_equal_parallelism_chain() {
        let (mut g, [_, _, filter, sink]) = pipeline();
        g.edge(filter, sink, PartitionKind::Default);
        assert_eq!(g.names(), vec!["Source -> Map -> Filter -> Sink"]);
    }

    #[test]
    fn keyed_and_rebalancing_exchanges_break_chains() {
        let (mut g, [_, _, filter, sink]) = pipeline();
        g.edge(filter, sink, PartitionKind::Hash);
        let jg = g.build().unwrap();
        assert_eq!(jg.vertices.len(), 2);
        assert_eq!(jg.edges.len(), 1);
        assert_eq!(jg.edges[0].kind, PartitionKind::Hash);
    }

    #[test]
    fn a_change_of_parallelism_breaks_the_chain_and_rebalances() {
        let (mut g, [_, _, filter, sink]) = pipeline();
        g.0.node_mut(sink).parallelism = Some(1);
        g.edge(filter, sink, PartitionKind::Default);
        let jg = g.build().unwrap();
        assert_eq!(
            jg.vertices.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            vec!["Source -> Map -> Filter", "Sink"]
        );
        assert_eq!(jg.edges.last().unwrap().kind, PartitionKind::Rebalance);
    }

    #[test]
    fn chaining_strategies_are_respected() {
        let (mut g, [_, map, filter, sink]) = pipeline();
        g.edge(filter, sink, PartitionKind::Default);
        g.0.node_mut(filter).chaining = ChainingStrategy::Head;
        assert_eq!(g.names(), vec!["Source -> Map", "Filter -> Sink"]);
        g.0.node_mut(filter).chaining = ChainingStrategy::Never;
        assert_eq!(g.names(), vec!["Source -> Map", "Filter", "Sink"]);
        g.0.node_mut(filter).chaining = ChainingStrategy::Always;
        g.0.node_mut(map).chaining = ChainingStrategy::Never;
        assert_eq!(g.names(), vec!["Source", "Map", "Filter -> Sink"]);
    }

    #[test]
    fn an_operator_with_two_inputs_heads_its_chain_but_fan_out_chains() {
        let (mut g, [src, _, filter, sink]) = pipeline();
        g.edge(filter, sink, PartitionKind::Default);
        g.edge(src, sink, PartitionKind::Default); // union-like second input
        let other = g.node("Other", false, None);
        g.edge(filter, other, PartitionKind::Default);
        assert_eq!(g.names(), vec!["Source -> Map -> Filter -> Other", "Sink"]);
    }

    #[test]
    fn forward_with_different_parallelism_is_rejected() {
        let (mut g, [_, _, filter, _]) = pipeline();
        let sink = g.node("Sink1", false, Some(1));
        g.edge(filter, sink, PartitionKind::Forward);
        let err = g.build().unwrap_err().to_string();
        assert!(err.contains("forward partitioning"), "{err}");
    }

    #[test]
    fn batch_only_nodes_are_bypassed_with_the_consumers_exchange() {
        let (mut g, [_, map, filter, sink]) = pipeline();
        g.edge(filter, sink, PartitionKind::Hash);
        g.0.node_mut(filter).batch_only = true;
        g.0.node_mut(filter).inherit_parallelism = true;
        g.0.node_mut(map).parallelism = Some(3);
        let batch = g.build().unwrap();
        assert_eq!(batch.node_parallelism[filter], 3, "inherits the parallelism of its input");
        let streaming = G(g.0.without_batch_only_nodes());
        assert_eq!(streaming.names(), vec!["Source", "Map", "Sink"]);
        let jg = streaming.build().unwrap();
        let last = jg.edges.last().unwrap();
        assert_eq!((last.kind, jg.vertices[last.source_vertex].name.as_str()), (PartitionKind::Hash, "Map"));
    }

    #[test]
    fn vertex_ids_are_stable_32_hex_digits() {
        let (g, _) = pipeline();
        let a = g.build().unwrap();
        let b = g.build().unwrap();
        assert_eq!(a.vertices[0].id, b.vertices[0].id);
        assert_eq!(a.vertices[0].id.len(), 32);
        assert!(a.vertices[0].id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn max_parallelism_follows_flinks_default_and_bounds_parallelism() {
        let (mut g, [_, map, _, _]) = pipeline();
        assert_eq!(g.build().unwrap().node_max_parallelism[map], 128);
        g.0.node_mut(map).max_parallelism = Some(4);
        g.0.node_mut(map).parallelism = Some(8);
        assert!(g.build().unwrap_err().to_string().contains("exceeds its max parallelism"));
    }
}
