//! Notification service: emails the customer when an order's stock is reserved (a
//! confirmation) or cannot be (an apology), over SMTP.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rivulet_sdk::{HandlerError, Received};

use crate::events::{InventoryReserved, OutOfStock, INVENTORY_RESERVED, OUT_OF_STOCK};

/// Sends the shop's emails.
#[derive(Clone)]
pub struct Mailer {
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    /// The server address is not `host:port`.
    #[error("SMTP server {0:?}: expected host:port")]
    Address(String),
    /// The sender address is invalid.
    #[error("sender {0:?}: {1}")]
    From(String, String),
}

impl Mailer {
    /// A mailer sending through `server` (host:port, plain SMTP) as `from`.
    pub fn new(server: &str, from: &str) -> Result<Mailer, MailerError> {
        let (host, port) = server
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| MailerError::Address(server.to_string()))?;
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| MailerError::From(from.to_string(), e.to_string()))?;
        Ok(Mailer { smtp, from })
    }

    /// Handles one event of the `inventory` topic.
    pub async fn handle(&self, event: Received) -> Result<(), HandlerError> {
        let (order_id, email, subject, body) = if event.ty == INVENTORY_RESERVED {
            let r: InventoryReserved = event.data()?;
            let lines: Vec<String> = r
                .items
                .iter()
                .map(|i| format!("  {} x {}", i.qty, i.sku))
                .collect();
            (
                r.order_id.clone(),
                r.email,
                format!("Order {} confirmed", r.order_id),
                format!(
                    "Thank you for your order {}.\n\nWe reserved:\n{}\n\nIt ships soon.\n",
                    r.order_id,
                    lines.join("\n")
                ),
            )
        } else if event.ty == OUT_OF_STOCK {
            let o: OutOfStock = event.data()?;
            (
                o.order_id.clone(),
                o.email,
                format!("Order {}: {} is out of stock", o.order_id, o.sku),
                format!(
                    "Sorry: your order {} asked for {} x {} and {} are left. Nothing was charged.\n",
                    o.order_id, o.requested, o.sku, o.available
                ),
            )
        } else {
            return Ok(());
        };
        let to = email
            .parse::<Mailbox>()
            .map_err(|e| HandlerError::permanent(format!("recipient {email:?}: {e}")))?;
        // The Message-ID is derived from the event id, so a retransmission of the same
        // email is recognisable as such by the receiving mail store.
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@shop.rivulet.invalid>", event.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| HandlerError::permanent(format!("building the email for {order_id}: {e}")))?;
        self.smtp
            .send(message)
            .await
            .map_err(|e| HandlerError::transient(format!("sending the email for {order_id}: {e}")))?;
        Ok(())
    }
}
