//! Barrier alignment: when a task with several input channels takes its snapshot (Flink's
//! `CheckpointBarrierHandler`).
//!
//! A task's snapshot for checkpoint `n` must reflect the records before barrier `n` on every
//! input channel. Barriers arrive on the channels at different times, so the task has to
//! decide what to do with the records that follow a barrier on one channel while it waits for
//! the barrier on another:
//!
//! - **EXACTLY_ONCE** (aligned): the channel is *blocked*, its records stay in the channel
//!   (which backpressures its producer) until barrier `n` has arrived on every channel. Then
//!   the task snapshots, forwards the barrier and unblocks all channels. The snapshot contains
//!   exactly the records before the barriers.
//! - **AT_LEAST_ONCE**: nothing is blocked; the snapshot is taken when the last barrier
//!   arrives. Records that followed an early barrier are in the snapshot and are processed
//!   again after a restore.
//!
//! A channel that has delivered its end of input counts as having delivered every barrier
//! that comes after: a finished producer never blocks a checkpoint. A barrier newer than the
//! one being aligned gives the older checkpoint up (it was aborted upstream); a barrier older
//! than the last one handled is stale and ignored, as is any barrier of a checkpoint the
//! coordinator aborted.
//!
//! [`BarrierAligner`] only decides; the task blocks and unblocks its input gates and takes the
//! snapshot, so the same logic serves one-input tasks (one gate) and two-input tasks (both
//! gates, numbered one after the other).

use eddy_core::config::CheckpointingMode;
use eddy_core::CheckpointBarrier;

/// What the task does after telling the aligner about a barrier, an end of input or an abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Nothing to do.
    Continue,
    /// Stop reading channel `usize` until the alignment ends (EXACTLY_ONCE).
    Block(usize),
    /// Barrier `id` is in from every channel: snapshot, forward the barrier, unblock all
    /// channels.
    Complete(CheckpointBarrier),
    /// The checkpoint being aligned was given up: unblock all channels; if a newer barrier
    /// caused it, that barrier's alignment has begun and its channel must be blocked (`block`).
    Aborted { checkpoint_id: u64, block: Option<usize> },
}

#[derive(Debug, Clone)]
struct Pending {
    barrier: CheckpointBarrier,
    arrived: Vec<bool>,
    missing: usize,
}

/// Tracks the barriers of one task's input channels.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    blocking: bool,
    finished: Vec<bool>,
    pending: Option<Pending>,
    /// The newest checkpoint snapshotted or given up here.
    latest: u64,
}

impl BarrierAligner {
    pub fn new(num_channels: usize, mode: CheckpointingMode) -> Self {
        BarrierAligner {
            blocking: mode == CheckpointingMode::ExactlyOnce,
            finished: vec![false; num_channels],
            pending: None,
            latest: 0,
        }
    }

    /// The checkpoint being aligned, if any.
    pub fn pending_checkpoint(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.barrier.id)
    }

    /// Barrier `barrier` arrived on channel `channel`.
    pub fn on_barrier(&mut self, channel: usize, barrier: CheckpointBarrier) -> Alignment {
        if barrier.id <= self.latest {
            return Alignment::Continue;
        }
        let mut aborted = None;
        match &self.pending {
            Some(p) if p.barrier.id == barrier.id => {}
            Some(p) if p.barrier.id > barrier.id => return Alignment::Continue,
            Some(p) => {
                aborted = Some(p.barrier.id);
                self.latest = p.barrier.id;
                self.pending = Some(self.start(barrier));
            }
            None => self.pending = Some(self.start(barrier)),
        }
        let blocking = self.blocking;
        let Some(p) = self.pending.as_mut() else { return Alignment::Continue };
        if !p.arrived[channel] {
            p.arrived[channel] = true;
            p.missing -= 1;
        }
        let action = if p.missing == 0 {
            self.complete()
        } else if blocking {
            Alignment::Block(channel)
        } else {
            Alignment::Continue
        };
        // A completion unblocks every channel anyway, so the superseded checkpoint needs no
        // action of its own then.
        match (aborted, action) {
            (Some(checkpoint_id), Alignment::Block(ch)) => {
                Alignment::Aborted { checkpoint_id, block: Some(ch) }
            }
            (Some(checkpoint_id), Alignment::Continue) => Alignment::Aborted { checkpoint_id, block: None },
            (_, action) => action,
        }
    }

    /// Channel `channel` delivered its end of input: it counts as every barrier to come.
    pub fn on_end_of_input(&mut self, channel: usize) -> Alignment {
        if std::mem::replace(&mut self.finished[channel], true) {
            return Alignment::Continue;
        }
        let Some(p) = self.pending.as_mut() else { return Alignment::Continue };
        if !p.arrived[channel] {
            p.arrived[channel] = true;
            p.missing -= 1;
        }
        if p.missing == 0 {
            self.complete()
        } else {
            Alignment::Continue
        }
    }

    /// The coordinator aborted checkpoint `checkpoint_id`.
    pub fn on_abort(&mut self, checkpoint_id: u64) -> Alignment {
        self.latest = self.latest.max(checkpoint_id);
        match &self.pending {
            Some(p) if p.barrier.id <= checkpoint_id => {
                let checkpoint_id = p.barrier.id;
                self.pending = None;
                Alignment::Aborted { checkpoint_id, block: None }
            }
            _ => Alignment::Continue,
        }
    }

    fn start(&self, barrier: CheckpointBarrier) -> Pending {
        let arrived = self.finished.clone();
        let missing = arrived.iter().filter(|f| !**f).count();
        Pending { barrier, arrived, missing }
    }

    fn complete(&mut self) -> Alignment {
        match self.pending.take() {
            Some(p) => {
                self.latest = p.barrier.id;
                Alignment::Complete(p.barrier)
            }
            None => Alignment::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::CheckpointType;
    use CheckpointingMode::*;

    fn barrier(id: u64) -> CheckpointBarrier {
        CheckpointBarrier { id, timestamp: 0, kind: CheckpointType::Checkpoint }
    }

    #[test]
    fn exactly_once_blocks_each_channel_until_the_last_barrier() {
        let mut a = BarrierAligner::new(3, ExactlyOnce);
        assert_eq!(a.on_barrier(1, barrier(1)), Alignment::Block(1));
        assert_eq!(a.on_barrier(0, barrier(1)), Alignment::Block(0));
        assert_eq!(a.pending_checkpoint(), Some(1));
        assert_eq!(a.on_barrier(2, barrier(1)), Alignment::Complete(barrier(1)));
        assert_eq!(a.pending_checkpoint(), None);
    }

    #[test]
    fn at_least_once_never_blocks_and_completes_on_the_last_barrier() {
        let mut a = BarrierAligner::new(2, AtLeastOnce);
        assert_eq!(a.on_barrier(0, barrier(4)), Alignment::Continue);
        assert_eq!(a.on_barrier(1, barrier(4)), Alignment::Complete(barrier(4)));
    }

    #[test]
    fn one_channel_completes_at_once() {
        for mode in [ExactlyOnce, AtLeastOnce] {
            let mut a = BarrierAligner::new(1, mode);
            assert_eq!(a.on_barrier(0, barrier(1)), Alignment::Complete(barrier(1)));
        }
    }

    #[test]
    fn end_of_input_counts_as_a_barrier() {
        let mut a = BarrierAligner::new(3, ExactlyOnce);
        assert_eq!(a.on_end_of_input(2), Alignment::Continue);
        assert_eq!(a.on_barrier(0, barrier(1)), Alignment::Block(0));
        // The last missing channel ends instead of sending its barrier.
        assert_eq!(a.on_end_of_input(1), Alignment::Complete(barrier(1)));
        // Later checkpoints need channel 0 only.
        assert_eq!(a.on_barrier(0, barrier(2)), Alignment::Complete(barrier(2)));
    }

    #[test]
    fn a_newer_barrier_gives_the_older_checkpoint_up() {
        let mut a = BarrierAligner::new(2, ExactlyOnce);
        assert_eq!(a.on_barrier(0, barrier(1)), Alignment::Block(0));
        assert_eq!(a.on_barrier(1, barrier(2)), Alignment::Aborted { checkpoint_id: 1, block: Some(1) });
        assert_eq!(a.pending_checkpoint(), Some(2));
        // The stale barrier 1 on channel 1 (had it come) is ignored.
        assert_eq!(a.on_barrier(1, barrier(1)), Alignment::Continue);
        assert_eq!(a.on_barrier(0, barrier(2)), Alignment::Complete(barrier(2)));
    }

    #[test]
    fn an_abort_ends_the_alignment_and_its_late_barriers_are_ignored() {
        let mut a = BarrierAligner::new(2, ExactlyOnce);
        assert_eq!(a.on_barrier(0, barrier(3)), Alignment::Block(0));
        assert_eq!(a.on_abort(3), Alignment::Aborted { checkpoint_id: 3, block: None });
        assert_eq!(a.on_barrier(1, barrier(3)), Alignment::Continue);
        // A checkpoint aborted before its first barrier arrived is never aligned.
        assert_eq!(a.on_abort(4), Alignment::Continue);
        assert_eq!(a.on_barrier(0, barrier(4)), Alignment::Continue);
        assert_eq!(a.on_barrier(0, barrier(5)), Alignment::Block(0));
    }
}
