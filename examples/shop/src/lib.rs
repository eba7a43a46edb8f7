//! The reference shop on the Rivulet services SDK.
//!
//! * `order`: `POST /orders` validates an order and publishes `OrderPlaced`.
//! * `inventory`: reserves stock on `OrderPlaced`, publishes `InventoryReserved` or
//!   `OutOfStock`, and `InventoryLow` when a SKU falls under the threshold.
//! * `notification`: emails the customer over SMTP.
//! * `smtp_sink`: a local SMTP server storing each message as a file, for the demo.
//! * `analytics`: stream processing jobs: sales per SKU per minute and low-stock alerts.
#![deny(missing_docs)]

pub mod analytics;
pub mod app;
pub mod events;
pub mod inventory;
pub mod notification;
pub mod order;
pub mod smtp_sink;
pub mod stock;
