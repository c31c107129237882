//! A bounded source over records held in memory (Flink's `fromCollection`).

use std::sync::Arc;

use eddy_core::{Data, Result};
use eddy_runtime::source::{
    Boundedness, ReaderContext, ReaderStatus, Source, SourceOutput, SourceReader, SourceSplit,
    SplitAssignment, SplitEnumerator,
};

/// Emits the given records in order, from one subtask.
pub struct CollectionSource<T> {
    data: Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    pub fn new(data: Vec<T>) -> Self {
        CollectionSource { data: Arc::new(data) }
    }
}

/// The whole collection is one split; `position` is the index of the next record to emit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollectionSplit {
    pub position: usize,
}

impl SourceSplit for CollectionSplit {
    fn split_id(&self) -> String {
        "collection".into()
    }
}

struct OneSplit(bool);

impl SplitEnumerator<CollectionSplit> for OneSplit {
    fn request_split(&mut self, _: usize) -> Result<SplitAssignment<CollectionSplit>> {
        if std::mem::replace(&mut self.0, true) {
            Ok(SplitAssignment::NoMoreSplits)
        } else {
            Ok(SplitAssignment::Split(CollectionSplit { position: 0 }))
        }
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<CollectionSplit>> {
        Ok(if self.0 { Vec::new() } else { vec![CollectionSplit { position: 0 }] })
    }
}

pub struct CollectionReader<T> {
    data: Arc<Vec<T>>,
    position: usize,
    assigned: bool,
}

impl<T: Data + Sync> SourceReader for CollectionReader<T> {
    type Output = T;
    type Split = CollectionSplit;

    fn add_split(&mut self, split: CollectionSplit) -> Result<()> {
        self.assigned = true;
        self.position = split.position.min(self.data.len());
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Vec<CollectionSplit>> {
        let unread = self.assigned && self.position < self.data.len();
        Ok(if unread { vec![CollectionSplit { position: self.position }] } else { Vec::new() })
    }

    fn poll_next(&mut self, out: &mut SourceOutput<T>) -> Result<ReaderStatus> {
        if !self.assigned {
            return Ok(ReaderStatus::NeedsSplit);
        }
        let end = (self.position + out.remaining()).min(self.data.len());
        for v in &self.data[self.position..end] {
            out.collect(v.clone());
        }
        self.position = end;
        Ok(if end == self.data.len() { ReaderStatus::EndOfInput } else { ReaderStatus::MoreAvailable })
    }
}

impl<T: Data + Sync> Source for CollectionSource<T> {
    type Output = T;
    type Split = CollectionSplit;
    type Reader = CollectionReader<T>;

    fn boundedness(&self) -> Boundedness {
        Boundedness::Bounded
    }

    fn create_enumerator(&self, _: usize) -> Result<Box<dyn SplitEnumerator<CollectionSplit>>> {
        Ok(Box::new(OneSplit(false)))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<CollectionReader<T>> {
        Ok(CollectionReader { data: self.data.clone(), position: 0, assigned: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_reader_goes_on_from_its_position() {
        crate::connectors::conformance::assert_restores_change_nothing(&CollectionSource::new(
            (0..23).collect::<Vec<u32>>(),
        ));
        crate::connectors::conformance::assert_restores_change_nothing(&CollectionSource::new(
            Vec::<u32>::new(),
        ));
    }
}
