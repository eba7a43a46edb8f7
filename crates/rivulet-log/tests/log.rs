//! Integration tests of the partition log: one test binary, a small harness per area.

mod common;

mod basics;
mod cleanup;
mod corruption;
mod crash;
mod faults;
mod journal;
mod model;
mod records;
mod settings;
mod slice;
