//! Windows: which event-time intervals a record belongs to.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StreamError};

/// An event-time interval `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond inside the window.
    pub start_ms: i64,
    /// First millisecond after the window.
    pub end_ms: i64,
}

impl Window {
    /// The window `[start_ms, end_ms)`.
    pub fn new(start_ms: i64, end_ms: i64) -> Window {
        debug_assert!(start_ms < end_ms, "empty window");
        Window { start_ms, end_ms }
    }

    /// Whether two windows share a millisecond or touch end to start.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start_ms < other.end_ms && other.start_ms < self.end_ms
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window::new(self.start_ms.min(other.start_ms), self.end_ms.max(other.end_ms))
    }
}

/// The one window of [`Windows::Global`].
pub const GLOBAL: Window = Window {
    start_ms: i64::MIN,
    end_ms: i64::MAX,
};

/// Most windows one record may fall into (hopping windows: size / advance).
pub const WINDOWS_PER_RECORD_MAX: i64 = 1_000;

/// How records are grouped in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Fixed, back-to-back windows of `size_ms`, aligned to the epoch.
    Tumbling {
        /// Window length.
        size_ms: i64,
    },
    /// Windows of `size_ms` starting every `advance_ms` (overlapping when advance < size).
    Hopping {
        /// Window length.
        size_ms: i64,
        /// Distance between window starts.
        advance_ms: i64,
    },
    /// Per key, records closer than `gap_ms` to each other share a window; a window ends
    /// `gap_ms` after its last record.
    Session {
        /// Inactivity that ends a session.
        gap_ms: i64,
    },
    /// One window per key over all time: a running aggregate (emitted on every update),
    /// closed only at the end of a bounded run.
    Global,
}

impl Windows {
    /// Tumbling windows of `size`.
    pub fn tumbling(size: Duration) -> Windows {
        Windows::Tumbling {
            size_ms: duration_ms(size),
        }
    }

    /// Hopping windows of `size` every `advance`.
    pub fn hopping(size: Duration, advance: Duration) -> Windows {
        Windows::Hopping {
            size_ms: duration_ms(size),
            advance_ms: duration_ms(advance),
        }
    }

    /// Session windows closed by `gap` of inactivity.
    pub fn session(gap: Duration) -> Windows {
        Windows::Session {
            gap_ms: duration_ms(gap),
        }
    }

    /// Checks the sizes: positive, advance at most size, a bounded number of windows per
    /// record.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Windows::Tumbling { size_ms } => size_ms > 0,
            Windows::Hopping { size_ms, advance_ms } => {
                advance_ms > 0 && advance_ms <= size_ms && size_ms / advance_ms <= WINDOWS_PER_RECORD_MAX
            }
            Windows::Session { gap_ms } => gap_ms > 0,
            Windows::Global => true,
        };
        if ok {
            Ok(())
        } else {
            Err(StreamError::Config(format!("invalid windows {self:?}")))
        }
    }

    /// Whether windows of a key merge (sessions).
    pub fn is_session(&self) -> bool {
        matches!(self, Windows::Session { .. })
    }

    /// The windows a record at `ts_ms` belongs to, oldest first. A session record's own
    /// window is `[ts, ts + gap)`, merged later with the key's overlapping sessions.
    pub fn assign(&self, ts_ms: i64, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            Windows::Tumbling { size_ms } => {
                let start = ts_ms - ts_ms.rem_euclid(size_ms);
                out.push(Window::new(start, start + size_ms));
            }
            Windows::Hopping { size_ms, advance_ms } => {
                let last = ts_ms - ts_ms.rem_euclid(advance_ms);
                // The oldest aligned start after `last - size`.
                let mut start = last - (size_ms - 1) / advance_ms * advance_ms;
                // Bounded by size / advance <= WINDOWS_PER_RECORD_MAX (validate).
                while start <= last {
                    if start + size_ms > ts_ms {
                        out.push(Window::new(start, start + size_ms));
                    }
                    start += advance_ms;
                }
            }
            Windows::Session { gap_ms } => out.push(Window::new(ts_ms, ts_ms + gap_ms)),
            Windows::Global => out.push(GLOBAL),
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tumbling_aligns_to_the_epoch_and_handles_negative_times() {
        let w = Windows::Tumbling { size_ms: 10 };
        let mut out = Vec::new();
        w.assign(25, &mut out);
        assert_eq!(out, vec![Window::new(20, 30)]);
        w.assign(-1, &mut out);
        assert_eq!(out, vec![Window::new(-10, 0)]);
    }

    #[test]
    fn invalid_windows_are_refused() {
        assert!(Windows::Tumbling { size_ms: 0 }.validate().is_err());
        assert!(Windows::Hopping {
            size_ms: 10,
            advance_ms: 20
        }
        .validate()
        .is_err());
        assert!(Windows::Hopping {
            size_ms: 1_000_000,
            advance_ms: 1
        }
        .validate()
        .is_err());
        assert!(Windows::Session { gap_ms: -1 }.validate().is_err());
        assert!(Windows::Hopping {
            size_ms: 10,
            advance_ms: 5
        }
        .validate()
        .is_ok());
    }

    proptest! {
        /// Hopping windows: exactly the windows `[k*adv, k*adv + size)` containing ts.
        #[test]
        fn hopping_matches_the_definition(ts in -10_000i64..10_000, adv in 1i64..50, extra in 0i64..200) {
            let size = adv + extra;
            let w = Windows::Hopping { size_ms: size, advance_ms: adv };
            let mut out = Vec::new();
            w.assign(ts, &mut out);
            let expected: Vec<Window> = (-20_000 / adv - 2..20_000 / adv + 2)
                .map(|k| Window::new(k * adv, k * adv + size))
                .filter(|win| win.start_ms <= ts && ts < win.end_ms)
                .collect();
            prop_assert_eq!(out, expected);
        }
    }
}
