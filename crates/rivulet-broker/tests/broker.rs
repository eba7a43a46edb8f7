//! Integration tests of the broker core: one test binary, a module per area.
//!
//! - `data_plane`: produce, append, read and wait through the broker's calls, and its
//!   policies (auto-creation, partition errors, metrics);
//! - `faults`: a full disk under topic metadata;
//! - `many_partitions`: thousands of partitions synced by a bounded flush pool, across
//!   kill -9;
//! - `transactions`: the transaction coordinator, markers and read_committed reads.

mod data_plane;
mod faults;
mod many_partitions;
mod transactions;
