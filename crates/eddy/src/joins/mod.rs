//! Joins: window join, co-group and interval join.

/// What `eddy::prelude` re-exports from joins.
pub mod prelude {}
