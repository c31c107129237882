//! The operators behind the DataStream API, all on the runtime's one- and two-input core.
//!
//! Each handles a batch per call. Where it can, an operator transforms the batch in place
//! (`map` reuses the batch's allocation when input and output have the same layout, `filter`
//! retains in place), so a chain of them moves records without copying them.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use eddy_core::config::RuntimeMode;
use eddy_core::keygroup::StableHasher;
use eddy_core::{Batch, Data, Key, Result};
use eddy_runtime::{Emitter, OneInputOperator, OperatorContext, TwoInputOperator};

use crate::functions::{
    CoProcessFunction, Collector, Context, KeyedContext, KeyedProcessFunction, ProcessFunction,
    RuntimeContext,
};

/// Hash maps for per-key state: a fast, seedless hasher.
pub(crate) type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<StableHasher>>;

pub(crate) struct MapOperator<I, O, F> {
    pub f: F,
    pub _t: std::marker::PhantomData<fn(I) -> O>,
}

impl<I: Data, O: Data, F: FnMut(I) -> O + Send + 'static> OneInputOperator for MapOperator<I, O, F> {
    type In = I;
    type Out = O;

    #[inline]
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        let values: Vec<O> = batch.values.into_iter().map(f).collect();
        out.emit_batch(Batch { values, timestamps: batch.timestamps })
    }
}

pub(crate) struct FilterOperator<T, F> {
    pub f: F,
    pub _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data, F: FnMut(&T) -> bool + Send + 'static> OneInputOperator for FilterOperator<T, F> {
    type In = T;
    type Out = T;

    #[inline]
    fn process_batch(&mut self, mut batch: Batch<T>, out: &mut Emitter<T>) -> Result<()> {
        let f = &mut self.f;
        if batch.timestamps.is_empty() {
            batch.values.retain(|v| f(v));
            return out.emit_batch(batch);
        }
        let mut kept = Batch::with_capacity(batch.len());
        for (v, ts) in batch.into_iter_with_timestamps() {
            if f(&v) {
                kept.push_with_timestamp(v, ts);
            }
        }
        out.emit_batch(kept)
    }
}

pub(crate) struct FlatMapOperator<I, O, F> {
    pub f: F,
    pub _t: std::marker::PhantomData<fn(I) -> O>,
}

impl<I: Data, O: Data, F: FnMut(I, &mut Collector<O>) + Send + 'static> OneInputOperator
    for FlatMapOperator<I, O, F>
{
    type In = I;
    type Out = O;

    #[inline]
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        let (main, _) = out.split();
        let mut c = Collector::new(main);
        if batch.timestamps.is_empty() {
            for v in batch.values {
                f(v, &mut c);
            }
        } else {
            for (v, ts) in batch.into_iter_with_timestamps() {
                c.out_mut().set_timestamp(ts);
                f(v, &mut c);
            }
            c.out_mut().set_timestamp(eddy_core::NO_TIMESTAMP);
        }
        c.finish()
    }
}

pub(crate) struct ProcessOperator<I, O, P> {
    pub f: P,
    pub _t: std::marker::PhantomData<fn(I) -> O>,
}

impl<I: Data, O: Data, P: ProcessFunction<I, O>> OneInputOperator for ProcessOperator<I, O, P> {
    type In = I;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        for (v, ts) in batch.into_iter_with_timestamps() {
            main.set_timestamp(ts);
            let mut ctx = Context::new(ts, side);
            let mut c = Collector::new(main);
            self.f.process_element(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.finish()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

pub(crate) struct KeyedProcessOperator<K, I, O, KF, P> {
    pub key: KF,
    pub f: P,
    pub _t: std::marker::PhantomData<fn(K, I) -> O>,
}

impl<K, I, O, KF, P> OneInputOperator for KeyedProcessOperator<K, I, O, KF, P>
where
    K: Key,
    I: Data,
    O: Data,
    KF: Fn(&I) -> K + Send + 'static,
    P: KeyedProcessFunction<K, I, O>,
{
    type In = I;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        for (v, ts) in batch.into_iter_with_timestamps() {
            let key = (self.key)(&v);
            main.set_timestamp(ts);
            let mut ctx = KeyedContext { inner: Context::new(ts, side), key: &key };
            let mut c = Collector::new(main);
            self.f.process_element(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.inner.finish()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

/// Keyed `reduce` (and the aggregations built on it).
///
/// STREAMING: emits the updated value for every input record. BATCH: emits one final value per
/// key when the input ends.
pub(crate) struct ReduceOperator<T, K, KF, RF> {
    pub key: KF,
    pub reduce: RF,
    pub state: KeyMap<K, Option<T>>,
    pub mode: RuntimeMode,
}

impl<T, K, KF, RF> OneInputOperator for ReduceOperator<T, K, KF, RF>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    RF: FnMut(T, T) -> T + Send + 'static,
{
    type In = T;
    type Out = T;

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Emitter<T>) -> Result<()> {
        let streaming = self.mode != RuntimeMode::Batch;
        let has_ts = batch.has_timestamps();
        let Batch { values, timestamps } = batch;
        for (i, v) in values.into_iter().enumerate() {
            let slot = self.state.entry((self.key)(&v)).or_insert(None);
            let new = match slot.take() {
                Some(acc) => (self.reduce)(acc, v),
                None => v,
            };
            if streaming {
                let ts = if has_ts { timestamps[i] } else { eddy_core::NO_TIMESTAMP };
                out.collect_with_timestamp(new.clone(), ts)?;
            }
            *slot = Some(new);
        }
        Ok(())
    }

    fn end_input(&mut self, out: &mut Emitter<T>) -> Result<()> {
        if self.mode == RuntimeMode::Batch {
            for (_, v) in self.state.drain() {
                if let Some(v) = v {
                    out.collect(v)?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) struct CoMapOperator<I1, I2, O, F1, F2> {
    pub f1: F1,
    pub f2: F2,
    pub _t: std::marker::PhantomData<fn(I1, I2) -> O>,
}

impl<I1, I2, O, F1, F2> TwoInputOperator for CoMapOperator<I1, I2, O, F1, F2>
where
    I1: Data,
    I2: Data,
    O: Data,
    F1: FnMut(I1) -> O + Send + 'static,
    F2: FnMut(I2) -> O + Send + 'static,
{
    type In1 = I1;
    type In2 = I2;
    type Out = O;

    fn process_batch1(&mut self, b: Batch<I1>, out: &mut Emitter<O>) -> Result<()> {
        let values = b.values.into_iter().map(&mut self.f1).collect();
        out.emit_batch(Batch { values, timestamps: b.timestamps })
    }

    fn process_batch2(&mut self, b: Batch<I2>, out: &mut Emitter<O>) -> Result<()> {
        let values = b.values.into_iter().map(&mut self.f2).collect();
        out.emit_batch(Batch { values, timestamps: b.timestamps })
    }
}

pub(crate) struct CoFlatMapOperator<I1, I2, O, F1, F2> {
    pub f1: F1,
    pub f2: F2,
    pub _t: std::marker::PhantomData<fn(I1, I2) -> O>,
}

fn flat_map_batch<I, O: Data>(
    b: Batch<I>,
    out: &mut Emitter<O>,
    f: &mut impl FnMut(I, &mut Collector<O>),
) -> Result<()> {
    let (main, _) = out.split();
    let mut c = Collector::new(main);
    for (v, ts) in b.into_iter_with_timestamps() {
        c.out_mut().set_timestamp(ts);
        f(v, &mut c);
    }
    c.finish()
}

impl<I1, I2, O, F1, F2> TwoInputOperator for CoFlatMapOperator<I1, I2, O, F1, F2>
where
    I1: Data,
    I2: Data,
    O: Data,
    F1: FnMut(I1, &mut Collector<O>) + Send + 'static,
    F2: FnMut(I2, &mut Collector<O>) + Send + 'static,
{
    type In1 = I1;
    type In2 = I2;
    type Out = O;

    fn process_batch1(&mut self, b: Batch<I1>, out: &mut Emitter<O>) -> Result<()> {
        flat_map_batch(b, out, &mut self.f1)
    }

    fn process_batch2(&mut self, b: Batch<I2>, out: &mut Emitter<O>) -> Result<()> {
        flat_map_batch(b, out, &mut self.f2)
    }
}

pub(crate) struct CoProcessOperator<I1, I2, O, P> {
    pub f: P,
    pub _t: std::marker::PhantomData<fn(I1, I2) -> O>,
}

impl<I1: Data, I2: Data, O: Data, P: CoProcessFunction<I1, I2, O>> TwoInputOperator
    for CoProcessOperator<I1, I2, O, P>
{
    type In1 = I1;
    type In2 = I2;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch1(&mut self, b: Batch<I1>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        for (v, ts) in b.into_iter_with_timestamps() {
            main.set_timestamp(ts);
            let mut ctx = Context::new(ts, side);
            let mut c = Collector::new(main);
            self.f.process_element1(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.finish()?;
        }
        Ok(())
    }

    fn process_batch2(&mut self, b: Batch<I2>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        for (v, ts) in b.into_iter_with_timestamps() {
            main.set_timestamp(ts);
            let mut ctx = Context::new(ts, side);
            let mut c = Collector::new(main);
            self.f.process_element2(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.finish()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}
