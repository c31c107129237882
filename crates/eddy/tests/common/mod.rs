//! Pieces the checkpoint tests share.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use eddy::sink::{Sink, SinkContext, SinkWriter};
use eddy::{Batch, Data, Result};

/// Keeps the highest count it received per key (a failed attempt's records included): after a
/// job with failures, every key's maximum must be its final count.
pub struct MaxPerKey<C>(pub Arc<Mutex<BTreeMap<i64, C>>>);

impl<C> Clone for MaxPerKey<C> {
    fn clone(&self) -> Self {
        MaxPerKey(self.0.clone())
    }
}

impl<C> Default for MaxPerKey<C> {
    fn default() -> Self {
        MaxPerKey(Arc::default())
    }
}

impl<C: Ord + Copy + Default + Send + 'static> Sink<(i64, C)> for MaxPerKey<C>
where
    (i64, C): Data,
{
    fn create_writer(&self, _: &SinkContext) -> Result<Box<dyn SinkWriter<(i64, C)>>> {
        Ok(Box::new(self.clone()))
    }
}

impl<C: Ord + Copy + Default + Send + 'static> SinkWriter<(i64, C)> for MaxPerKey<C>
where
    (i64, C): Data,
{
    fn write_batch(&mut self, batch: Batch<(i64, C)>) -> Result<()> {
        let mut max = self.0.lock().unwrap();
        for (k, c) in batch.values {
            let m = max.entry(k).or_default();
            *m = (*m).max(c);
        }
        Ok(())
    }
}
