//! Windows on event time: each record joins the windows its time falls in
//! (one for a tumbling window, `size / slide` for a hopping one) and gets
//! their bounds as two extra columns, `window_start` and `window_end`.
//!
//! With an allowed lateness, a window closes once the largest event time
//! seen so far (in log-time order, over every record of the topic) is at
//! least its end plus the lateness. A record arriving for a closed window
//! is left out of it and counted as late; the window's result is final.
//! The largest time seen and the late count are the stage's state,
//! committed with the view.

use crate::EngineError;
use crate::ops::aggregate::StateSource;
use crate::ops::{Delta, Keys};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimestampMicrosecondType};
use std::sync::Arc;

/// The state of a view's window stage lives under this key.
pub const WINDOW_STATE_KEY: &[u8] = &[0xFE];

/// Which windows a time falls in, and when they close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// The time column, in the topic's table.
    pub time_column: usize,
    /// Window length, microseconds.
    pub size: i64,
    /// Distance between window starts (equal to `size` for tumbling).
    pub slide: i64,
    /// How long after its end a window still takes records; `None`: always.
    pub lateness: Option<i64>,
}

impl WindowSpec {
    /// Starts of the windows holding `t`, earliest first. Windows are
    /// aligned to the Unix epoch, as `date_bin` aligns them.
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> + use<> {
        let (size, slide) = (self.size, self.slide);
        let last = t.div_euclid(slide) * slide;
        // The earliest start s with s + size > t, on the slide's grid.
        let span = (size - 1) / slide;
        let first = last - span * slide;
        (0..=span)
            .map(move |k| first + k * slide)
            .filter(move |s| s + size > t)
    }

    /// Whether the window starting at `start` is closed once `max_seen`
    /// is the largest event time seen.
    pub fn closed(&self, start: i64, max_seen: Option<i64>) -> bool {
        match (self.lateness, max_seen) {
            (Some(l), Some(m)) => (start + self.size).saturating_add(l) <= m,
            _ => false,
        }
    }

    /// Whether a record may join several windows (its row key then names
    /// the window too).
    pub fn hops(&self) -> bool {
        self.slide != self.size
    }
}

/// The stage's state: the largest event time seen, and how many records
/// came too late for a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    pub max_seen: Option<i64>,
    pub late: u64,
}

impl WindowState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.max_seen.unwrap_or(i64::MIN).to_be_bytes());
        out.extend_from_slice(&self.late.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<WindowState> {
        let max = i64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
        let late = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(WindowState {
            max_seen: (max != i64::MIN).then_some(max),
            late,
        })
    }
}

/// The window stage of a view.
pub struct Windower {
    pub spec: WindowSpec,
    /// The table with the window columns.
    pub schema: SchemaRef,
    /// `None` until loaded from the store.
    state: Option<WindowState>,
    dirty: bool,
}

impl Windower {
    pub fn new(spec: WindowSpec, schema: SchemaRef) -> Windower {
        Windower {
            spec,
            schema,
            state: None,
            dirty: false,
        }
    }

    /// The view is new: nothing to load.
    pub fn assume_empty_state(&mut self) {
        if self.state.is_none() {
            self.state = Some(WindowState::default());
        }
    }

    /// Forgets the state; it is loaded again when needed.
    pub fn reset(&mut self) {
        self.state = None;
        self.dirty = false;
    }

    /// The state as it is now (to restore it if a batch is redone).
    pub fn save(&self) -> (Option<WindowState>, bool) {
        (self.state, self.dirty)
    }

    pub fn restore(&mut self, saved: (Option<WindowState>, bool)) {
        (self.state, self.dirty) = saved;
    }

    /// Puts the state into `out` for the commit, if it changed.
    pub fn take_dirty(&mut self, out: &mut kappa_store::Puts) {
        if std::mem::take(&mut self.dirty)
            && let Some(state) = self.state
        {
            out.push(WINDOW_STATE_KEY, Some(&state.encode()));
        }
    }

    /// Puts each record into its windows, in order.
    pub fn apply(
        &mut self,
        delta: Delta,
        source: &mut dyn StateSource,
    ) -> Result<Delta, EngineError> {
        let mut state = match self.state {
            Some(s) => s,
            None => match source.get(WINDOW_STATE_KEY)? {
                Some(bytes) => WindowState::decode(&bytes).ok_or_else(|| {
                    EngineError::Store(kappa_store::StoreError::Corrupt(
                        "a view's window state does not decode".into(),
                    ))
                })?,
                None => WindowState::default(),
            },
        };
        let times = delta.batch.column(self.spec.time_column);
        let times = times
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| EngineError::Plan("a window's time column is not a TIMESTAMP".into()))?;
        let n = delta.len();
        let mut rows = Vec::with_capacity(n);
        let mut starts = Vec::with_capacity(n);
        for i in 0..n {
            if delta.weights[i] <= 0 {
                return Err(EngineError::Plan(
                    "a window reads a topic, whose records are never retracted".into(),
                ));
            }
            if times.is_null(i) {
                continue;
            }
            let t = times.value(i);
            let mut late = false;
            for s in self.spec.starts(t) {
                if self.spec.closed(s, state.max_seen) {
                    late = true;
                } else {
                    rows.push(i as u32);
                    starts.push(s);
                }
            }
            state.late += u64::from(late);
            state.max_seen = Some(state.max_seen.map_or(t, |m| m.max(t)));
        }
        self.dirty |= self.state != Some(state);
        self.state = Some(state);
        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = delta
            .batch
            .columns()
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<Result<_, _>>()?;
        let time_type = times.data_type().clone();
        columns.push(timestamps(starts.iter().copied(), &time_type));
        columns.push(timestamps(
            starts.iter().map(|s| s + self.spec.size),
            &time_type,
        ));
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        let mut keys = Keys::with_capacity(indices.len(), delta.keys.len() * 16);
        let mut key = Vec::new();
        for (&i, s) in indices.values().iter().zip(&starts) {
            key.clear();
            key.extend_from_slice(delta.keys.get(i as usize));
            if self.spec.hops() {
                key.extend_from_slice(&s.to_be_bytes());
            }
            keys.push(&key);
        }
        Ok(Delta {
            batch,
            weights: indices
                .values()
                .iter()
                .map(|&i| delta.weights[i as usize])
                .collect(),
            log_times: indices
                .values()
                .iter()
                .map(|&i| delta.log_times[i as usize])
                .collect(),
            keys,
            // Windows come first: no aggregate has run.
            groups: Vec::new(),
        })
    }
}

fn timestamps(values: impl Iterator<Item = i64>, ty: &DataType) -> ArrayRef {
    let array = PrimitiveArray::<TimestampMicrosecondType>::from_iter_values(values);
    let tz = match ty {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    Arc::new(array.with_timezone_opt(tz))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window holding `t`, by brute force over the grid.
    fn brute(size: i64, slide: i64, t: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let mut s = (t - size - slide).div_euclid(slide) * slide;
        while s <= t {
            if s <= t && t < s + size {
                out.push(s);
            }
            s += slide;
        }
        out
    }

    #[test]
    fn starts_match_brute_force() {
        for (size, slide) in [(10, 10), (10, 5), (10, 3), (7, 2), (5, 7), (60, 60), (1, 1)] {
            let spec = WindowSpec {
                time_column: 0,
                size,
                slide,
                lateness: None,
            };
            for t in -50..50 {
                assert_eq!(
                    spec.starts(t).collect::<Vec<_>>(),
                    brute(size, slide, t),
                    "size {size} slide {slide} t {t}"
                );
            }
        }
    }

    #[test]
    fn a_window_closes_at_its_end_plus_the_lateness() {
        let spec = WindowSpec {
            time_column: 0,
            size: 10,
            slide: 10,
            lateness: Some(5),
        };
        assert!(!spec.closed(0, None));
        assert!(!spec.closed(0, Some(14)));
        assert!(spec.closed(0, Some(15)));
        let unbounded = WindowSpec {
            lateness: None,
            ..spec
        };
        assert!(!unbounded.closed(0, Some(i64::MAX)));
    }

    #[test]
    fn state_round_trips() {
        for s in [
            WindowState::default(),
            WindowState {
                max_seen: Some(-3),
                late: 7,
            },
        ] {
            assert_eq!(WindowState::decode(&s.encode()), Some(s));
        }
        assert_eq!(WindowState::decode(&[1, 2]), None);
    }
}
