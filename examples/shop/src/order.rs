//! Order service: `POST /orders` validates an order and publishes `OrderPlaced`.

use rivulet_sdk::{Client, Delivery, Event};
use serde::{Deserialize, Serialize};

use crate::events::{order_placed_id, Item, OrderPlaced, ORDERS, ORDER_PLACED};

/// Lines per order.
pub const ITEMS_MAX: usize = 20;
/// Units per line.
pub const QTY_MAX: u32 = 100;
/// Length of ids, SKUs and email addresses.
pub const TEXT_BYTES_MAX: usize = 254;

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// Client-chosen id, so a retried request is recognised; generated when absent.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Customer email.
    pub email: String,
    /// Lines.
    pub items: Vec<Item>,
}

/// Why an order was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The order is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Publishing failed.
    #[error("publishing the order failed: {0}")]
    Publish(#[from] rivulet_sdk::SdkError),
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks an order and returns the event it becomes.
pub fn validate(req: PlaceOrder) -> Result<OrderPlaced, OrderError> {
    let bad = |m: String| Err(OrderError::Invalid(m));
    let order_id = match req.order_id {
        Some(id) if is_token(&id) => id,
        Some(id) => {
            return bad(format!(
                "order_id {id:?}: use 1-64 letters, digits, '-', '_' or '.'"
            ))
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let email = req.email.trim().to_string();
    let valid_email = email.len() <= TEXT_BYTES_MAX
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'));
    if !valid_email {
        return bad(format!("email {email:?} is not a valid address"));
    }
    if req.items.is_empty() || req.items.len() > ITEMS_MAX {
        return bad(format!("an order has 1 to {ITEMS_MAX} items"));
    }
    for item in &req.items {
        if !is_token(&item.sku) {
            return bad(format!(
                "sku {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                item.sku
            ));
        }
        if item.qty == 0 || item.qty > QTY_MAX {
            return bad(format!("qty of {} must be 1 to {QTY_MAX}", item.sku));
        }
    }
    Ok(OrderPlaced {
        order_id,
        email,
        items: req.items,
    })
}

/// Publishes `OrderPlaced` keyed by order id, once it is durable.
pub async fn publish(client: &Client, order: &OrderPlaced) -> Result<Delivery, OrderError> {
    let event = Event::new("/shop/orders", ORDER_PLACED, order.clone())
        .with_id(order_placed_id(&order.order_id))
        .with_subject(order.order_id.clone());
    Ok(client.publish(ORDERS, Some(&order.order_id), &event).await?)
}

/// Validates and publishes.
pub async fn place(client: &Client, req: PlaceOrder) -> Result<(OrderPlaced, Delivery), OrderError> {
    let order = validate(req)?;
    let at = publish(client, &order).await?;
    Ok((order, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(email: &str, items: Vec<Item>) -> PlaceOrder {
        PlaceOrder {
            order_id: None,
            email: email.into(),
            items,
        }
    }

    #[test]
    fn rejects_bad_orders() {
        let one = || {
            vec![Item {
                sku: "widget".into(),
                qty: 1,
            }]
        };
        assert!(validate(req("ann@example.com", one())).is_ok());
        assert!(validate(req("not-an-email", one())).is_err());
        assert!(validate(req("a@b.c\r\nBcc: x@y.z", one())).is_err());
        assert!(validate(req("ann@example.com", vec![])).is_err());
        assert!(validate(req(
            "ann@example.com",
            vec![Item {
                sku: "widget".into(),
                qty: 0
            }]
        ))
        .is_err());
        assert!(validate(req(
            "ann@example.com",
            vec![Item {
                sku: "../etc".into(),
                qty: 1
            }]
        ))
        .is_err());
    }
}
