//! Analytics jobs on the stream processing engine: sales per SKU per minute (tumbling
//! windows in event time) and low-stock alerts (a running total of reservations joined with
//! the catalogue table). Both read the inventory service's reservations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rivulet_sdk::transport::TopicSpec;
use rivulet_sdk::{Client, InRecord, OutRecord, Received};
use rivulet_stream::table::Table;
use rivulet_stream::{JobOptions, Pipeline, RunningJob, Stream, StreamError, WindowResult, Windows};
use serde::{Deserialize, Serialize};

use crate::events::{InventoryReserved, INVENTORY, INVENTORY_RESERVED};

/// Compacted topic of products, keyed by SKU.
pub const CATALOGUE: &str = "catalogue";
/// Sales per SKU per window.
pub const SALES: &str = "sales-per-minute";
/// Running stock per SKU, written while it is under the product's threshold.
pub const LOW_STOCK_ALERTS: &str = "low-stock-alerts";

/// A product of the catalogue table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Stock-keeping unit.
    pub sku: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units stocked at the start.
    pub stock: i64,
    /// Alert when fewer units than this remain.
    pub low_stock: i64,
}

/// One reserved order line, priced from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoldLine {
    /// Stock-keeping unit.
    pub sku: String,
    /// Units.
    pub qty: i64,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units stocked at the start.
    pub stock: i64,
    /// Alert threshold.
    pub low_stock: i64,
}

/// Sales of a SKU in a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sales {
    /// Orders with the SKU.
    pub orders: u64,
    /// Units sold.
    pub units: i64,
    /// Revenue in cents.
    pub revenue_cents: i64,
}

/// A SKU's running stock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Units reserved so far.
    pub reserved: i64,
    /// Units left of the initial stock.
    pub remaining: i64,
    /// The product's threshold.
    pub low_stock: i64,
}

/// The demo catalogue's products: the inventory's SKUs and initial units, with prices.
pub fn demo_products(stock: &BTreeMap<String, i64>, low_stock: i64) -> Vec<Product> {
    stock
        .iter()
        .map(|(sku, units)| Product {
            sku: sku.clone(),
            price_cents: match sku.as_str() {
                "widget" => 1_299,
                "gadget" => 4_950,
                _ => 9_900,
            },
            stock: *units,
            low_stock,
        })
        .collect()
}

/// Writes the products to the compacted catalogue topic.
pub async fn publish_catalogue(client: &Client, products: &[Product]) -> Result<(), StreamError> {
    let spec = TopicSpec {
        partitions: 1,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    client.transport().ensure_topic(CATALOGUE, spec).await?;
    let mut records = Vec::new();
    for p in products {
        records.push(OutRecord {
            key: Some(p.sku.clone().into_bytes()),
            value: Some(serde_json::to_vec(p)?),
            ..OutRecord::default()
        });
    }
    client.transport().publish(CATALOGUE, records).await?;
    Ok(())
}

/// The order lines of an `InventoryReserved` event; other inventory events give none.
fn reserved_lines(r: InRecord) -> Vec<(String, i64)> {
    if r.header("ce_type") != Some(INVENTORY_RESERVED.as_bytes()) {
        return Vec::new();
    }
    match Received::from_record(r).data::<InventoryReserved>() {
        Ok(e) => e.items.into_iter().map(|i| (i.sku, i64::from(i.qty))).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "InventoryReserved without its data");
            Vec::new()
        }
    }
}

/// Reserved lines priced from the catalogue; lines of SKUs it lacks are dropped.
fn sold_lines(catalogue: &Table<Product>) -> Stream<SoldLine> {
    Stream::records(&[INVENTORY]).flat_map(reserved_lines).join_table(
        catalogue,
        |(sku, _)| sku.clone(),
        |(sku, qty), product| {
            product.map(|p| SoldLine {
                sku,
                qty,
                price_cents: p.price_cents,
                stock: p.stock,
                low_stock: p.low_stock,
            })
        },
    )
}

/// Orders, units and revenue per SKU per window.
pub fn sales_pipeline(catalogue: &Table<Product>, window: Duration) -> Pipeline {
    sold_lines(catalogue)
        .key_by(|l| l.sku.clone())
        .window(Windows::tumbling(window))
        .aggregate(Sales::default, |s, l| {
            s.orders += 1;
            s.units += l.qty;
            s.revenue_cents += l.qty * l.price_cents;
        })
        .to(SALES)
}

/// Each SKU's running stock, written whenever it is under the threshold.
pub fn low_stock_pipeline(catalogue: &Table<Product>) -> Pipeline {
    sold_lines(catalogue)
        .key_by(|l| l.sku.clone())
        .global()
        .aggregate(StockLevel::default, |s, l| {
            s.reserved += l.qty;
            s.remaining = l.stock - s.reserved;
            s.low_stock = l.low_stock;
        })
        .filter_results(|_, s| s.remaining < s.low_stock)
        .to(LOW_STOCK_ALERTS)
}

/// The two running jobs.
#[derive(Debug)]
pub struct Analytics {
    /// Sales per SKU per window.
    pub sales: RunningJob,
    /// Low-stock alerts.
    pub low_stock: RunningJob,
}

impl Analytics {
    /// Stops both jobs after a last checkpoint.
    pub async fn shutdown(self) -> Result<(), StreamError> {
        self.sales.shutdown().await?;
        self.low_stock.shutdown().await?;
        Ok(())
    }
}

/// Starts both jobs over the client's transport, each keeping a local copy of its state
/// under `state_dir`.
pub async fn start(
    client: &Client,
    window: Duration,
    state_dir: &std::path::Path,
) -> Result<Analytics, StreamError> {
    client.ensure_topic(INVENTORY).await?;
    let catalogue = Table::<Product>::json(CATALOGUE);
    let transport = Arc::clone(client.transport());
    let sales = rivulet_stream::start(
        transport.clone(),
        sales_pipeline(&catalogue, window),
        JobOptions::new(SALES)
            .idle_timeout(Duration::from_secs(2))
            .state_dir(state_dir),
    )
    .await?;
    let low_stock = rivulet_stream::start(
        transport,
        low_stock_pipeline(&catalogue),
        JobOptions::new(LOW_STOCK_ALERTS).state_dir(state_dir),
    )
    .await?;
    Ok(Analytics { sales, low_stock })
}

/// The results in a job's output topic, oldest first.
pub async fn results<A: serde::de::DeserializeOwned>(
    client: &Client,
    topic: &str,
) -> Result<Vec<WindowResult<String, A>>, StreamError> {
    let read = client
        .transport()
        .read_to_end(topic, BTreeMap::new(), 100_000)
        .await;
    let records = match read {
        Ok((records, _)) => records,
        Err(rivulet_sdk::SdkError::UnknownTopic(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(records
        .iter()
        .filter_map(|r| serde_json::from_slice(r.value.as_deref()?).ok())
        .collect())
}
