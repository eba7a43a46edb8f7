//! Positions in the journal's ring: where the next record goes, how far the file is
//! preallocated, and how far a checkpoint released it.
//!
//! Positions are logical (bytes since the journal began); the file offset of position `p`
//! is `p % ring_bytes`. A record never straddles the ring's end: one that does not fit
//! before it starts at the next multiple of `ring_bytes` (offset 0) instead.

/// The ring's state, kept under one lock shared by the writer and the keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// Bytes of the ring (the file's final size).
    pub ring_bytes: u64,
    /// Where the next record goes.
    pub head: u64,
    /// The sequence number the next record carries.
    pub lsn: u64,
    /// Where replay would start: space before it may be overwritten.
    pub checkpoint: u64,
    /// Bytes of the file preallocated (zero-filled), from offset 0.
    pub grown: u64,
}

/// Why a record cannot be written yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The ring is full up to the checkpoint: a checkpoint must release space.
    Checkpoint,
    /// The file is not preallocated that far yet.
    Grow,
}

impl Ring {
    /// Where a record of `len` bytes would start.
    pub fn place(&self, len: u64) -> u64 {
        let offset = self.head % self.ring_bytes;
        if offset + len > self.ring_bytes {
            self.head.next_multiple_of(self.ring_bytes)
        } else {
            self.head
        }
    }

    /// The position for a record of `len` bytes, or what it waits for.
    pub fn reserve(&self, len: u64) -> Result<u64, Wait> {
        assert!(
            len <= self.ring_bytes / 2,
            "a record of {len} bytes in a ring of {}",
            self.ring_bytes
        );
        let at = self.place(len);
        if at + len - self.checkpoint > self.ring_bytes {
            return Err(Wait::Checkpoint);
        }
        if at % self.ring_bytes + len > self.grown {
            return Err(Wait::Grow);
        }
        Ok(at)
    }

    /// Records that a record of `len` bytes was written at `at`.
    pub fn advance(&mut self, at: u64, len: u64) {
        assert!(
            at >= self.head && at % self.ring_bytes + len <= self.grown,
            "a record outside the ring"
        );
        self.head = at + len;
        self.lsn += 1;
    }

    /// Bytes written since the checkpoint.
    pub fn used(&self) -> u64 {
        self.head - self.checkpoint
    }

    /// True when the file should grow by `grow_bytes` so the writer does not wait: less
    /// than two growth steps are preallocated ahead of the head, or the head wrapped before
    /// the file reached its final size.
    pub fn wants_growth(&self, grow_bytes: u64) -> bool {
        let wrapped = self.head >= self.ring_bytes;
        self.grown < self.ring_bytes && (wrapped || self.grown < self.head % self.ring_bytes + 2 * grow_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Ring {
        Ring {
            ring_bytes: 64,
            head: 0,
            lsn: 1,
            checkpoint: 0,
            grown: 64,
        }
    }

    #[test]
    fn records_wrap_instead_of_straddling_the_end() {
        let mut r = ring();
        r.head = 40;
        r.checkpoint = 40;
        assert_eq!(r.reserve(16), Ok(40));
        r.advance(40, 16);
        // 8 bytes left before the end: a 16-byte record starts at the next lap.
        assert_eq!(r.reserve(16), Ok(64));
        r.advance(64, 16);
        assert_eq!((r.head, r.lsn), (80, 3));
    }

    #[test]
    fn a_full_ring_waits_for_a_checkpoint() {
        let mut r = ring();
        for i in 0..4 {
            let at = r.reserve(16).expect("room");
            assert_eq!(at, i * 16);
            r.advance(at, 16);
        }
        assert_eq!(r.reserve(16), Err(Wait::Checkpoint));
        r.checkpoint = 16;
        assert_eq!(r.reserve(16), Ok(64));
    }

    #[test]
    fn growth_is_waited_for_and_wanted_ahead_of_the_head() {
        let mut r = ring();
        r.grown = 16;
        assert!(r.wants_growth(16));
        assert_eq!(r.reserve(16), Ok(0));
        r.advance(0, 16);
        assert_eq!(r.reserve(16), Err(Wait::Grow));
        r.grown = 64;
        assert!(!r.wants_growth(16));
    }
}
