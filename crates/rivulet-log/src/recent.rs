//! Where the latest batches of a segment start, kept in memory so a reader that follows the
//! log finds its batches without reading their headers from the file.

use std::collections::VecDeque;

/// Batches remembered per segment.
const RECENT_BATCHES_MAX: usize = 64;

/// `(base offset, position)` of the latest batches written to a segment, ascending.
#[derive(Debug, Default)]
pub(crate) struct RecentBatches {
    starts: VecDeque<(i64, u64)>,
}

/// The visible end of the segment being planned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VisibleEnd {
    /// Offset after the last visible record.
    pub offset: i64,
    /// Position after the last visible batch.
    pub position: u64,
}

impl RecentBatches {
    /// Records a batch written at `position`.
    pub fn push(&mut self, base_offset: i64, position: u64) {
        debug_assert!(self
            .starts
            .back()
            .is_none_or(|&(b, p)| b < base_offset && p < position));
        if self.starts.len() == RECENT_BATCHES_MAX {
            self.starts.pop_front();
        }
        self.starts.push_back((base_offset, position));
    }

    /// `(position, length, next offset)` of the whole visible batches from the one holding
    /// `offset`, up to `max_bytes` but at least that one; `None` when `offset` is older than
    /// the batches remembered or not visible.
    pub fn plan(&self, offset: i64, end: VisibleEnd, max_bytes: u64) -> Option<(u64, u64, i64)> {
        if offset >= end.offset {
            return None;
        }
        // Batches starting at or past the visible end are not readable yet.
        let visible = self.starts.partition_point(|&(_, p)| p < end.position);
        let first = self.starts.range(..visible).rposition(|&(b, _)| b <= offset)?;
        // Where batch `i` starts: the next remembered batch, or the visible end.
        let bound = |i: usize| -> (i64, u64) {
            match self.starts.get(i) {
                Some(&start) if i < visible => start,
                _ => (end.offset, end.position),
            }
        };
        let position = self.starts[first].1;
        let (mut next_offset, mut stop) = bound(first + 1);
        // Whole batches up to `max_bytes`; at most RECENT_BATCHES_MAX passes.
        for i in first + 1..visible {
            let (next, after) = bound(i + 1);
            if after - position > max_bytes {
                break;
            }
            next_offset = next;
            stop = after;
        }
        Some((position, stop - position, next_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of 10 offsets and 100 bytes each, from offset 0 at position 0.
    fn ten(n: i64) -> RecentBatches {
        let mut r = RecentBatches::default();
        for i in 0..n {
            r.push(i * 10, (i * 100) as u64);
        }
        r
    }

    #[test]
    fn plans_whole_visible_batches_within_the_budget() {
        let r = ten(5);
        let end = VisibleEnd {
            offset: 40,
            position: 400,
        };
        // Offset 15 lies in the second batch; 250 bytes hold two whole batches.
        assert_eq!(r.plan(15, end, 250), Some((100, 200, 30)));
        // The first batch is returned even over budget.
        assert_eq!(r.plan(15, end, 10), Some((100, 100, 20)));
        // Everything visible, not the invisible fifth batch.
        assert_eq!(r.plan(0, end, 1 << 20), Some((0, 400, 40)));
        assert_eq!(r.plan(40, end, 1 << 20), None, "nothing visible at the end");
    }

    #[test]
    fn older_offsets_than_remembered_are_left_to_the_headers() {
        let mut r = ten(RECENT_BATCHES_MAX as i64 + 5);
        let end = VisibleEnd {
            offset: 10 * (RECENT_BATCHES_MAX as i64 + 5),
            position: 100 * (RECENT_BATCHES_MAX as u64 + 5),
        };
        assert_eq!(r.plan(0, end, 1 << 20), None);
        assert_eq!(r.plan(49, end, 100), None);
        assert_eq!(r.plan(50, end, 100), Some((500, 100, 60)));
        r.push(10 * (RECENT_BATCHES_MAX as i64 + 5), end.position);
        assert_eq!(
            r.plan(end.offset - 1, end, 1 << 20),
            Some((end.position - 100, 100, end.offset))
        );
    }
}
