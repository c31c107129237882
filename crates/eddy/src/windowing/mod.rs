//! Windows: assigners, triggers, evictors, window functions and the window operator.

/// What `eddy::prelude` re-exports from windowing.
pub mod prelude {}
