//! The stock of one SKU as an event-sourced aggregate: the stream `stock-<sku>` holds when
//! it was stocked and every reservation and release, each tagged with its order. The state
//! is rebuilt from those events; changes are appended at the revision they were decided at,
//! so two orders for the last unit cannot both take it.

use std::collections::HashMap;

use rivulet_sdk::aggregate::Aggregate;
use serde::{Deserialize, Serialize};

/// Units of a SKU and the orders holding some.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stock {
    /// Units on hand, not reserved.
    pub units: i64,
    /// True once the initial stock was received.
    pub stocked: bool,
    /// Order id -> units it holds.
    pub reservations: HashMap<String, i64>,
}

/// What happens to a SKU's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StockEvent {
    /// The initial stock arrived.
    Stocked {
        /// Units received.
        units: i64,
    },
    /// An order took units.
    Reserved {
        /// The order.
        order_id: String,
        /// Units taken.
        qty: i64,
    },
    /// An order gave its units back (another line of it could not be reserved).
    Released {
        /// The order.
        order_id: String,
        /// Units returned.
        qty: i64,
    },
}

impl Aggregate for Stock {
    type Event = StockEvent;
    const CATEGORY: &'static str = "stock";

    fn event_type(event: &StockEvent) -> &'static str {
        match event {
            StockEvent::Stocked { .. } => "Stocked",
            StockEvent::Reserved { .. } => "Reserved",
            StockEvent::Released { .. } => "Released",
        }
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Stocked { units } => {
                self.units += units;
                self.stocked = true;
            }
            StockEvent::Reserved { order_id, qty } => {
                self.units -= qty;
                self.reservations.insert(order_id.clone(), *qty);
            }
            StockEvent::Released { order_id, qty } => {
                self.units += qty;
                self.reservations.remove(order_id);
            }
        }
    }
}

/// A command id that is the same every time for the same (order, SKU, action): a command
/// retried after an unknown outcome is written once (FNV-1a, 128 bits).
pub fn command_id(parts: &[&str]) -> uuid::Uuid {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013B;
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u128::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    uuid::Uuid::from_u128(hash)
}
