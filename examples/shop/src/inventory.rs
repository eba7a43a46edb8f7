//! Inventory service: reserves stock on `OrderPlaced` and publishes `InventoryReserved` or
//! `OutOfStock`, and `InventoryLow` when a SKU falls under the threshold.
//!
//! Stock lives in the event store, one stream per SKU ([`crate::stock`]): each line of an
//! order is reserved with the SKU's expected revision, and a line that cannot be reserved
//! releases the lines already reserved. Every change carries an id derived from the order,
//! so an order delivered again (a crash, a retried request) changes nothing twice, and two
//! concurrent orders for the last unit cannot both succeed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rivulet_sdk::aggregate::{EventStoreBackend, ExecuteError, Repository};
use rivulet_sdk::{Client, Event, HandlerError, OutRecord, Received, SdkError};

use crate::events::{
    inventory_outcome_id, InventoryLow, InventoryReserved, OrderPlaced, OutOfStock, INVENTORY, INVENTORY_LOW,
    INVENTORY_RESERVED, ORDER_PLACED, OUT_OF_STOCK,
};
use crate::stock::{command_id, Stock, StockEvent};

/// Decisions and appends one command may take when other orders keep changing its SKU.
const ATTEMPTS: u32 = 50;

/// Stock levels in the event store.
pub struct Inventory {
    stock: Repository<Stock>,
    initial: BTreeMap<String, i64>,
    low_threshold: i64,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("initial", &self.initial)
            .field("low_threshold", &self.low_threshold)
            .finish_non_exhaustive()
    }
}

/// The demo catalogue: SKU and initial units.
pub fn demo_catalogue() -> BTreeMap<String, i64> {
    [("widget", 1_000), ("gadget", 500), ("gizmo", 20)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn store_failed<R>(e: ExecuteError<R>) -> HandlerError {
    match e {
        ExecuteError::Rejected(_) => HandlerError::transient("refused"),
        ExecuteError::Conflicts { attempts } => {
            HandlerError::transient(format!("stock kept changing: {attempts} attempts conflicted"))
        }
        ExecuteError::Store(e) => HandlerError::transient(e.to_string()),
    }
}

/// A reserved line: SKU, units, units left after it, and whether this delivery reserved it.
struct Line {
    sku: String,
    qty: i64,
    left: i64,
    fresh: bool,
}

impl Inventory {
    /// Inventory over `store` with this catalogue; `InventoryLow` fires when a SKU falls
    /// under `low_threshold`.
    pub fn new(
        store: Arc<dyn EventStoreBackend>,
        initial: BTreeMap<String, i64>,
        low_threshold: i64,
    ) -> Arc<Inventory> {
        Arc::new(Inventory {
            stock: Repository::new(store).with_attempts(ATTEMPTS),
            initial,
            low_threshold,
        })
    }

    /// Receives the catalogue's initial stock, once per SKU (a SKU stocked before keeps its
    /// history).
    pub async fn stock_up(&self) -> Result<(), SdkError> {
        for (sku, units) in &self.initial {
            let units = *units;
            self.stock
                .execute(sku, command_id(&["stocked", sku]), |s: &Stock| {
                    Ok::<_, ()>(if s.stocked {
                        Vec::new()
                    } else {
                        vec![StockEvent::Stocked { units }]
                    })
                })
                .await
                .map_err(|e| match e {
                    ExecuteError::Store(e) => e,
                    other => SdkError::EventStore(format!("stocking {sku}: {other}")),
                })?;
        }
        Ok(())
    }

    /// Current stock of the catalogue's SKUs.
    pub async fn stock(&self) -> Result<BTreeMap<String, i64>, SdkError> {
        let mut out = BTreeMap::new();
        for sku in self.initial.keys() {
            out.insert(sku.clone(), self.stock.load(sku).await?.state.units);
        }
        Ok(out)
    }

    /// Initial stock.
    pub fn initial(&self) -> &BTreeMap<String, i64> {
        &self.initial
    }

    async fn reserve(&self, order_id: &str, sku: &str, qty: i64) -> Result<Result<Line, i64>, HandlerError> {
        let fresh = AtomicBool::new(false);
        let decided = self
            .stock
            .execute(sku, command_id(&["reserve", order_id, sku]), |s: &Stock| {
                fresh.store(false, Ordering::Relaxed);
                if s.reservations.contains_key(order_id) {
                    return Ok(Vec::new());
                }
                if s.units < qty {
                    return Err(s.units);
                }
                fresh.store(true, Ordering::Relaxed);
                Ok(vec![StockEvent::Reserved {
                    order_id: order_id.to_string(),
                    qty,
                }])
            })
            .await;
        match decided {
            Ok(after) => Ok(Ok(Line {
                sku: sku.to_string(),
                qty,
                left: after.state.units,
                fresh: fresh.load(Ordering::Relaxed),
            })),
            Err(ExecuteError::Rejected(available)) => Ok(Err(available)),
            Err(e) => Err(store_failed(e)),
        }
    }

    async fn release(&self, order_id: &str, line: &Line) -> Result<(), HandlerError> {
        let (order, qty) = (order_id.to_string(), line.qty);
        self.stock
            .execute(
                &line.sku,
                command_id(&["release", order_id, &line.sku]),
                |s: &Stock| {
                    Ok::<_, ()>(if s.reservations.contains_key(&order) {
                        vec![StockEvent::Released {
                            order_id: order.clone(),
                            qty,
                        }]
                    } else {
                        Vec::new()
                    })
                },
            )
            .await
            .map(|_| ())
            .map_err(store_failed)
    }

    /// Handles one event of the `orders` topic.
    pub async fn handle(&self, client: &Client, event: Received) -> Result<(), HandlerError> {
        if event.ty != ORDER_PLACED {
            return Ok(());
        }
        let order: OrderPlaced = event.data()?;
        let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
        for item in &order.items {
            *wanted.entry(item.sku.as_str()).or_insert(0) += i64::from(item.qty);
        }
        // Lines in SKU order; the first short line releases those before it.
        let mut lines = Vec::with_capacity(wanted.len());
        let mut short = None;
        for (sku, qty) in wanted {
            match self.reserve(&order.order_id, sku, qty).await? {
                Ok(line) => lines.push(line),
                Err(available) => {
                    short = Some((sku.to_string(), qty, available));
                    break;
                }
            }
        }
        let id = inventory_outcome_id(&order.order_id);
        let mut records: Vec<OutRecord> = Vec::new();
        match short {
            Some((sku, requested, available)) => {
                for line in &lines {
                    self.release(&order.order_id, line).await?;
                }
                let data = OutOfStock {
                    order_id: order.order_id.clone(),
                    email: order.email.clone(),
                    sku,
                    requested: u32::try_from(requested).unwrap_or(u32::MAX),
                    available,
                };
                let e = Event::new("/shop/inventory", OUT_OF_STOCK, data)
                    .with_id(id)
                    .with_subject(order.order_id.clone());
                records.push(e.to_record(Some(&order.order_id))?);
            }
            None => {
                let data = InventoryReserved {
                    order_id: order.order_id.clone(),
                    email: order.email.clone(),
                    items: order.items.clone(),
                };
                let e = Event::new("/shop/inventory", INVENTORY_RESERVED, data)
                    .with_id(id)
                    .with_subject(order.order_id.clone());
                records.push(e.to_record(Some(&order.order_id))?);
                for line in lines.iter().filter(|l| l.fresh) {
                    let before = line.left + line.qty;
                    if before >= self.low_threshold && line.left < self.low_threshold {
                        let low = InventoryLow {
                            sku: line.sku.clone(),
                            remaining: line.left,
                            threshold: self.low_threshold,
                        };
                        let e = Event::new("/shop/inventory", INVENTORY_LOW, low)
                            .with_id(format!("inventory-low.{}.{}", line.sku, order.order_id))
                            .with_subject(line.sku.clone());
                        records.push(e.to_record(Some(&line.sku))?);
                    }
                }
            }
        }
        // Stock is already decided durably; publishing again after a failure publishes the
        // same event ids, which consumers skip.
        client
            .publish_records(INVENTORY, records)
            .await
            .map(|_| ())
            .map_err(|e| HandlerError::transient(e.to_string()))
    }
}
