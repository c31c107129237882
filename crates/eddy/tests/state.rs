//! Keyed state: the primitives, TTL, snapshots by key group and restore with rescaling, checked
//! against Flink's semantics (`FLINK-SEMANTICS.md`, "Key groups and max parallelism").
//!
//! Most tests drive [`KeyedState`] directly, giving the processing time of each access; the
//! end-to-end tests run keyed process functions in real jobs or through the operator harness
//! and its manual clock. Expected values are worked out by hand or with plain Rust from the
//! input, never taken from a run of the engine.
//!
//! Every test runs on both backends (`state.backend: hashmap` and `fjall`): the suite in
//! `state/suite.rs` is included once per backend, with `BACKEND` naming it.

mod hashmap {
    const BACKEND: eddy_core::config::StateBackendKind = eddy_core::config::StateBackendKind::HashMap;
    include!("state/suite.rs");
}

mod fjall {
    const BACKEND: eddy_core::config::StateBackendKind = eddy_core::config::StateBackendKind::Fjall;
    include!("state/suite.rs");
}
