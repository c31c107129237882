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
//! - **Unaligned** (EXACTLY_ONCE with `execution.checkpointing.unaligned.enabled`): the task
//!   does not wait. At the first barrier `n` it snapshots its operators and forwards the
//!   barrier at once; the records that still arrive on the channels whose barrier `n` is
//!   missing were sent before the cut but are processed after the snapshot, so the task records
//!   them as the checkpoint's *in-flight data* (while processing them as usual) until the last
//!   barrier `n` arrives, and then acknowledges. A restore replays the in-flight data into the
//!   restored operators before reading new input. With `aligned-checkpoint-timeout` above zero
//!   a checkpoint starts aligned and switches to unaligned when its alignment takes longer.
//!   Savepoints are always aligned. Unlike Flink, the barrier does not overtake records already
//!   queued in the task's output channels; it overtakes nothing but never waits for other
//!   inputs either.
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

use std::time::{Duration, Instant};

use eddy_core::config::CheckpointingMode;
use eddy_core::{CheckpointBarrier, CheckpointType};

/// What the task does after telling the aligner about a barrier, an end of input, an abort or
/// the passing of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Nothing to do.
    Continue,
    /// Stop reading channel `usize` until the alignment ends (EXACTLY_ONCE).
    Block(usize),
    /// Barrier `id` is in from every channel: snapshot, forward the barrier, unblock all
    /// channels.
    Complete(CheckpointBarrier),
    /// The checkpoint being aligned was given up: unblock all channels (dropping any in-flight
    /// data recorded for it); if a newer barrier caused it, that barrier's alignment has begun
    /// and its channel must be blocked (`block`). A step for a newer checkpoint
    /// (`Complete`, `SnapshotUnaligned`) also gives up whatever an older one recorded.
    Aborted { checkpoint_id: u64, block: Option<usize> },
    /// Unaligned: snapshot now, forward the barrier and unblock all channels; from now on the
    /// records of the channels [`in_flight`](BarrierAligner::in_flight) names belong to the
    /// checkpoint.
    SnapshotUnaligned(CheckpointBarrier),
    /// Unaligned: the last barrier of checkpoint `u64` arrived: acknowledge it with the in-flight
    /// data recorded.
    CompleteUnaligned(u64),
}

#[derive(Debug, Clone)]
struct Pending {
    barrier: CheckpointBarrier,
    arrived: Vec<bool>,
    missing: usize,
    /// When the first barrier arrived.
    started: Instant,
    /// The snapshot was taken at the first barrier (or when alignment timed out).
    unaligned: bool,
}

/// Tracks the barriers of one task's input channels.
#[derive(Debug, Clone)]
pub struct BarrierAligner {
    blocking: bool,
    /// Unaligned checkpoints are on: switch to unaligned after aligning this long (zero: at
    /// the first barrier).
    unaligned_after: Option<Duration>,

    finished: Vec<bool>,
    pending: Option<Pending>,
    /// The newest checkpoint snapshotted or given up here.
    latest: u64,
}

impl BarrierAligner {
    pub fn new(num_channels: usize, mode: CheckpointingMode) -> Self {
        BarrierAligner {
            blocking: mode == CheckpointingMode::ExactlyOnce,
            unaligned_after: None,
            finished: vec![false; num_channels],
            pending: None,
            latest: 0,
        }
    }

    /// Takes unaligned checkpoints (EXACTLY_ONCE only; savepoints stay aligned), switching to
    /// unaligned when alignment has taken `aligned_timeout` (zero: from the first barrier).
    pub fn with_unaligned(mut self, aligned_timeout: Duration) -> Self {
        if self.blocking {
            self.unaligned_after = Some(aligned_timeout);
        }
        self
    }

    /// Whether records arriving now on `channel` are in-flight data of an unaligned checkpoint.
    #[inline]
    pub fn in_flight(&self, channel: usize) -> bool {
        self.pending.as_ref().is_some_and(|p| p.unaligned && !p.arrived[channel])
    }

    /// When a pending aligned checkpoint turns unaligned, if it can; the task calls
    /// [`on_time`](Self::on_time) once this has passed.
    pub fn alignment_deadline(&self) -> Option<Instant> {
        let (p, after) = (self.pending.as_ref()?, self.unaligned_after?);
        (!p.unaligned && p.barrier.kind == CheckpointType::Checkpoint).then(|| p.started + after)
    }

    /// The time is `now`: an alignment that has taken longer than the aligned-checkpoint
    /// timeout turns unaligned.
    pub fn on_time(&mut self, now: Instant) -> Alignment {
        match self.alignment_deadline() {
            Some(deadline) if deadline <= now => self.go_unaligned(),
            _ => Alignment::Continue,
        }
    }

    fn go_unaligned(&mut self) -> Alignment {
        match self.pending.as_mut() {
            Some(p) => {
                p.unaligned = true;
                Alignment::SnapshotUnaligned(p.barrier)
            }
            None => Alignment::Continue,
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
        let started = match &self.pending {
            Some(p) if p.barrier.id == barrier.id => false,
            Some(p) if p.barrier.id > barrier.id => return Alignment::Continue,
            Some(p) => {
                aborted = Some(p.barrier.id);
                self.latest = p.barrier.id;
                true
            }
            None => true,
        };
        if started {
            self.pending = Some(self.start(barrier));
        }
        let blocking = self.blocking;
        let Some(p) = self.pending.as_mut() else { return Alignment::Continue };
        if !p.arrived[channel] {
            p.arrived[channel] = true;
            p.missing -= 1;
        }
        let unaligned_now = started
            && p.missing > 0
            && self.unaligned_after == Some(Duration::ZERO)
            && p.barrier.kind == CheckpointType::Checkpoint;
        let action = if p.missing == 0 {
            self.complete()
        } else if p.unaligned {
            Alignment::Continue
        } else if unaligned_now {
            self.go_unaligned()
        } else if blocking {
            Alignment::Block(channel)
        } else {
            Alignment::Continue
        };
        // A completion or an unaligned snapshot unblocks every channel anyway, so the superseded
        // checkpoint needs no action of its own then.
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
        Pending { barrier, arrived, missing, started: Instant::now(), unaligned: false }
    }

    fn complete(&mut self) -> Alignment {
        match self.pending.take() {
            Some(p) => {
                self.latest = p.barrier.id;
                if p.unaligned {
                    Alignment::CompleteUnaligned(p.barrier.id)
                } else {
                    Alignment::Complete(p.barrier)
                }
            }
            None => Alignment::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn unaligned(channels: usize) -> BarrierAligner {
        BarrierAligner::new(channels, ExactlyOnce).with_unaligned(Duration::ZERO)
    }

    #[test]
    fn unaligned_snapshots_at_the_first_barrier_and_records_the_other_channels_until_theirs() {
        let mut a = unaligned(3);
        assert!(!a.in_flight(0));
        assert_eq!(a.on_barrier(1, barrier(1)), Alignment::SnapshotUnaligned(barrier(1)));
        assert_eq!([a.in_flight(0), a.in_flight(1), a.in_flight(2)], [true, false, true]);
        assert_eq!(a.on_barrier(0, barrier(1)), Alignment::Continue);
        assert_eq!([a.in_flight(0), a.in_flight(2)], [false, true]);
        // The last channel ends instead of sending its barrier.
        assert_eq!(a.on_end_of_input(2), Alignment::CompleteUnaligned(1));
        assert!(!a.in_flight(2));
        assert_eq!(a.pending_checkpoint(), None);
    }

    #[test]
    fn savepoints_and_single_channels_stay_aligned() {
        let mut a = unaligned(2);
        let savepoint = CheckpointBarrier { id: 1, timestamp: 0, kind: CheckpointType::Savepoint };
        assert_eq!(a.on_barrier(0, savepoint), Alignment::Block(0));
        assert_eq!(a.alignment_deadline(), None);
        assert_eq!(a.on_barrier(1, savepoint), Alignment::Complete(savepoint));
        let mut one = unaligned(1);
        assert_eq!(one.on_barrier(0, barrier(1)), Alignment::Complete(barrier(1)));
        // AT_LEAST_ONCE has nothing to be unaligned about.
        let mut alo = BarrierAligner::new(2, AtLeastOnce).with_unaligned(Duration::ZERO);
        assert_eq!(alo.on_barrier(0, barrier(1)), Alignment::Continue);
        assert!(!alo.in_flight(1));
    }

    #[test]
    fn an_alignment_that_times_out_turns_unaligned() {
        let mut a = BarrierAligner::new(2, ExactlyOnce).with_unaligned(Duration::from_secs(30));
        assert_eq!(a.on_barrier(0, barrier(1)), Alignment::Block(0));
        let deadline = a.alignment_deadline().expect("aligning");
        assert_eq!(a.on_time(deadline - Duration::from_millis(1)), Alignment::Continue);
        assert!(!a.in_flight(1));
        assert_eq!(a.on_time(deadline), Alignment::SnapshotUnaligned(barrier(1)));
        assert_eq!(a.alignment_deadline(), None);
        assert!(a.in_flight(1) && !a.in_flight(0));
        assert_eq!(a.on_barrier(1, barrier(1)), Alignment::CompleteUnaligned(1));
    }

    #[test]
    fn a_newer_barrier_or_an_abort_gives_an_unaligned_checkpoint_up() {
        let mut a = unaligned(2);
        assert_eq!(a.on_barrier(0, barrier(1)), Alignment::SnapshotUnaligned(barrier(1)));
        assert_eq!(a.on_barrier(1, barrier(2)), Alignment::SnapshotUnaligned(barrier(2)));
        assert!(a.in_flight(0) && !a.in_flight(1));
        assert_eq!(a.on_abort(2), Alignment::Aborted { checkpoint_id: 2, block: None });
        assert!(!a.in_flight(0));
        assert_eq!(a.on_barrier(0, barrier(2)), Alignment::Continue);
    }
}
