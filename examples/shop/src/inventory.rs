//! Inventory service: reserves stock on `OrderPlaced` and publishes `InventoryReserved` or
//! `OutOfStock`, and `InventoryLow` when a SKU falls under the threshold.
//!
//! Stock is derived from the `inventory` topic: on start the service replays it (initial
//! stock minus every `InventoryReserved`), so a restart never loses or repeats a
//! reservation. An order already decided is not decided again, whatever redelivers it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rivulet_sdk::{Client, Event, HandlerError, OutRecord, Received, Result as SdkResult};

use crate::events::{
    inventory_outcome_id, InventoryLow, InventoryReserved, OrderPlaced, OutOfStock, INVENTORY, INVENTORY_LOW,
    INVENTORY_RESERVED, ORDER_PLACED, OUT_OF_STOCK,
};

/// Records replayed at start-up.
const REPLAY_RECORDS_MAX: usize = 10_000_000;

/// Stock levels and decided orders.
#[derive(Debug)]
pub struct Inventory {
    state: Mutex<State>,
    initial: BTreeMap<String, i64>,
    low_threshold: i64,
}

#[derive(Debug, Default)]
struct State {
    stock: BTreeMap<String, i64>,
    /// Order id -> reserved (true) or out of stock (false).
    decided: HashMap<String, bool>,
}

/// The demo catalogue: SKU and initial units.
pub fn demo_catalogue() -> BTreeMap<String, i64> {
    [("widget", 1_000), ("gadget", 500), ("gizmo", 20)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

impl Inventory {
    /// Inventory with initial stock; `InventoryLow` fires when a SKU falls under
    /// `low_threshold`.
    pub fn new(initial: BTreeMap<String, i64>, low_threshold: i64) -> Arc<Inventory> {
        Arc::new(Inventory {
            state: Mutex::new(State {
                stock: initial.clone(),
                decided: HashMap::new(),
            }),
            initial,
            low_threshold,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Current stock.
    pub fn stock(&self) -> BTreeMap<String, i64> {
        self.lock().stock.clone()
    }

    /// Initial stock.
    pub fn initial(&self) -> &BTreeMap<String, i64> {
        &self.initial
    }

    /// Rebuilds stock and decided orders from the `inventory` topic. Returns the number of
    /// orders decided so far.
    pub async fn recover(&self, client: &Client) -> SdkResult<usize> {
        client.ensure_topic(INVENTORY).await?;
        let (records, _) = client
            .transport()
            .read_to_end(INVENTORY, BTreeMap::new(), REPLAY_RECORDS_MAX)
            .await?;
        let mut state = self.lock();
        *state = State {
            stock: self.initial.clone(),
            decided: HashMap::new(),
        };
        for r in records {
            let e = Received::from_record(r);
            if e.ty == INVENTORY_RESERVED {
                let Ok(res) = e.data::<InventoryReserved>() else {
                    continue;
                };
                if state.decided.insert(res.order_id.clone(), true).is_none() {
                    for item in &res.items {
                        *state.stock.entry(item.sku.clone()).or_insert(0) -= i64::from(item.qty);
                    }
                }
            } else if e.ty == OUT_OF_STOCK {
                if let Ok(oos) = e.data::<OutOfStock>() {
                    state.decided.entry(oos.order_id).or_insert(false);
                }
            }
        }
        Ok(state.decided.len())
    }

    /// Handles one event of the `orders` topic.
    pub async fn handle(&self, client: &Client, event: Received) -> Result<(), HandlerError> {
        if event.ty != ORDER_PLACED {
            return Ok(());
        }
        let order: OrderPlaced = event.data()?;
        let mut records: Vec<OutRecord> = Vec::new();
        let reserved = {
            let mut state = self.lock();
            if state.decided.contains_key(&order.order_id) {
                return Ok(());
            }
            let short = order.items.iter().find_map(|item| {
                let available = state.stock.get(&item.sku).copied().unwrap_or(0);
                let wanted: i64 = order
                    .items
                    .iter()
                    .filter(|i| i.sku == item.sku)
                    .map(|i| i64::from(i.qty))
                    .sum();
                (available < wanted).then(|| (item.clone(), available))
            });
            let id = inventory_outcome_id(&order.order_id);
            match short {
                Some((item, available)) => {
                    let data = OutOfStock {
                        order_id: order.order_id.clone(),
                        email: order.email.clone(),
                        sku: item.sku,
                        requested: item.qty,
                        available,
                    };
                    let e = Event::new("/shop/inventory", OUT_OF_STOCK, data)
                        .with_id(id)
                        .with_subject(order.order_id.clone());
                    records.push(e.to_record(Some(&order.order_id))?);
                    state.decided.insert(order.order_id.clone(), false);
                    false
                }
                None => {
                    for item in &order.items {
                        let level = state.stock.entry(item.sku.clone()).or_insert(0);
                        let before = *level;
                        *level -= i64::from(item.qty);
                        if before >= self.low_threshold && *level < self.low_threshold {
                            let low = InventoryLow {
                                sku: item.sku.clone(),
                                remaining: *level,
                                threshold: self.low_threshold,
                            };
                            let e = Event::new("/shop/inventory", INVENTORY_LOW, low)
                                .with_id(format!("inventory-low.{}.{}", item.sku, order.order_id))
                                .with_subject(item.sku.clone());
                            records.push(e.to_record(Some(&item.sku))?);
                        }
                    }
                    let data = InventoryReserved {
                        order_id: order.order_id.clone(),
                        email: order.email.clone(),
                        items: order.items.clone(),
                    };
                    let e = Event::new("/shop/inventory", INVENTORY_RESERVED, data)
                        .with_id(id)
                        .with_subject(order.order_id.clone());
                    records.insert(0, e.to_record(Some(&order.order_id))?);
                    state.decided.insert(order.order_id.clone(), true);
                    true
                }
            }
        };
        if let Err(e) = client.publish_records(INVENTORY, records).await {
            // Undo the decision so the retry decides again.
            let mut state = self.lock();
            state.decided.remove(&order.order_id);
            if reserved {
                for item in &order.items {
                    *state.stock.entry(item.sku.clone()).or_insert(0) += i64::from(item.qty);
                }
            }
            return Err(HandlerError::transient(e.to_string()));
        }
        Ok(())
    }
}
