//! The shop's events and topics.

use serde::{Deserialize, Serialize};

/// Topic of order events (`OrderPlaced`), keyed by order id.
pub const ORDERS: &str = "orders";
/// Topic of inventory events (`InventoryReserved`, `OutOfStock` keyed by order id;
/// `InventoryLow` keyed by SKU).
pub const INVENTORY: &str = "inventory";

/// CloudEvents type of [`OrderPlaced`].
pub const ORDER_PLACED: &str = "shop.order.placed";
/// CloudEvents type of [`InventoryReserved`].
pub const INVENTORY_RESERVED: &str = "shop.inventory.reserved";
/// CloudEvents type of [`OutOfStock`].
pub const OUT_OF_STOCK: &str = "shop.inventory.out_of_stock";
/// CloudEvents type of [`InventoryLow`].
pub const INVENTORY_LOW: &str = "shop.inventory.low";

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Stock-keeping unit.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// A customer placed an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// Order id.
    pub order_id: String,
    /// Where the confirmation goes.
    pub email: String,
    /// What was ordered.
    pub items: Vec<Item>,
}

/// Stock was reserved for every line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReserved {
    /// Order id.
    pub order_id: String,
    /// Customer email.
    pub email: String,
    /// What was reserved.
    pub items: Vec<Item>,
}

/// An order could not be reserved; nothing was taken from stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfStock {
    /// Order id.
    pub order_id: String,
    /// Customer email.
    pub email: String,
    /// The first SKU short of stock.
    pub sku: String,
    /// Requested quantity of it.
    pub requested: u32,
    /// What was left.
    pub available: i64,
}

/// A SKU's stock fell under the low-stock threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryLow {
    /// Stock-keeping unit.
    pub sku: String,
    /// Units left.
    pub remaining: i64,
    /// The threshold crossed.
    pub threshold: i64,
}

/// Event id of an order's `OrderPlaced`: derived from the order id, so a client retrying
/// `POST /orders` with the same `order_id` publishes a duplicate the services skip.
pub fn order_placed_id(order_id: &str) -> String {
    format!("order-placed.{order_id}")
}

/// Event id of the inventory outcome of an order (reserved or out of stock).
pub fn inventory_outcome_id(order_id: &str) -> String {
    format!("inventory-outcome.{order_id}")
}
