//! AMQP reply codes and the errors that close a channel or the whole connection.

use rivulet_broker::queues::QueueError;

/// `CONTENT_TOO_LARGE`.
pub const CONTENT_TOO_LARGE: u16 = 311;
/// `NO_ROUTE`: a mandatory message matched no queue.
pub const NO_ROUTE: u16 = 312;
/// `CONNECTION_FORCED`: the broker is shutting down.
pub const CONNECTION_FORCED: u16 = 320;
/// `ACCESS_REFUSED`.
pub const ACCESS_REFUSED: u16 = 403;
/// `NOT_FOUND`.
pub const NOT_FOUND: u16 = 404;
/// `RESOURCE_LOCKED`.
pub const RESOURCE_LOCKED: u16 = 405;
/// `PRECONDITION_FAILED`.
pub const PRECONDITION_FAILED: u16 = 406;
/// `FRAME_ERROR`.
pub const FRAME_ERROR: u16 = 501;
/// `COMMAND_INVALID`.
pub const COMMAND_INVALID: u16 = 503;
/// `CHANNEL_ERROR`.
pub const CHANNEL_ERROR: u16 = 504;
/// `UNEXPECTED_FRAME`.
pub const UNEXPECTED_FRAME: u16 = 505;
/// `RESOURCE_ERROR`.
pub const RESOURCE_ERROR: u16 = 506;
/// `NOT_ALLOWED`.
pub const NOT_ALLOWED: u16 = 530;
/// `NOT_IMPLEMENTED`.
pub const NOT_IMPLEMENTED: u16 = 540;
/// `INTERNAL_ERROR`.
pub const INTERNAL_ERROR: u16 = 541;

/// The name RabbitMQ prefixes reply texts with.
pub fn code_name(code: u16) -> &'static str {
    match code {
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        502 => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        INTERNAL_ERROR => "INTERNAL_ERROR",
        _ => "ERROR",
    }
}

/// An error that ends a channel or the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// True: the whole connection closes; false: only the channel.
    pub connection: bool,
    /// Reply code.
    pub code: u16,
    /// Reply text, `NAME - detail` as RabbitMQ writes it.
    pub text: String,
    /// Class of the method that failed (0: none).
    pub class_id: u16,
    /// The method that failed (0: none).
    pub method_id: u16,
    /// The channel a channel error closes.
    pub channel: u16,
}

impl Fault {
    /// A channel error.
    pub fn channel(code: u16, detail: impl AsRef<str>) -> Fault {
        Fault::new(false, code, detail.as_ref())
    }

    /// A connection error.
    pub fn connection(code: u16, detail: impl AsRef<str>) -> Fault {
        Fault::new(true, code, detail.as_ref())
    }

    fn new(connection: bool, code: u16, detail: &str) -> Fault {
        let mut text = format!("{} - {detail}", code_name(code));
        // A short string holds 255 bytes.
        while text.len() > 255 {
            text.pop();
        }
        Fault {
            connection,
            code,
            text,
            class_id: 0,
            method_id: 0,
            channel: 0,
        }
    }

    /// The same fault, naming the channel and method that caused it.
    pub fn at(mut self, channel: u16, class_id: u16, method_id: u16) -> Fault {
        self.channel = channel;
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }
}

impl From<QueueError> for Fault {
    fn from(e: QueueError) -> Fault {
        match &e {
            QueueError::NotFound(m) => Fault::channel(NOT_FOUND, m),
            QueueError::AccessRefused(m) => Fault::channel(ACCESS_REFUSED, m),
            QueueError::ResourceLocked(m) => Fault::channel(RESOURCE_LOCKED, m),
            QueueError::PreconditionFailed(m) => Fault::channel(PRECONDITION_FAILED, m),
            QueueError::LimitReached(m) => Fault::channel(RESOURCE_ERROR, m),
            QueueError::Broker(inner) => {
                tracing::error!(error = %inner, "Broker failure behind an AMQP method");
                Fault::connection(INTERNAL_ERROR, inner.to_string())
            }
        }
    }
}
