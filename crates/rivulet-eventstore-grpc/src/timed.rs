//! Every call's duration and failures in the broker's metrics
//! (`rivulet_request_duration_seconds{protocol="kurrentdb",api="Streams.Append"}`,
//! `rivulet_request_errors_total`): a layer around the whole gRPC router. For calls that
//! stream their answers the duration is the time to the response's start (a finite read of a
//! stream has its first 1,000 events ready by then).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use rivulet_broker::Broker;

/// The services and methods labelled by name; anything else is `other`, so clients cannot
/// make new series.
const KNOWN: [(&str, &str); 4] = [
    ("event_store.client.streams.Streams", "Streams"),
    (
        "event_store.client.persistent_subscriptions.PersistentSubscriptions",
        "PersistentSubscriptions",
    ),
    (
        "event_store.client.server_features.ServerFeatures",
        "ServerFeatures",
    ),
    ("event_store.client.gossip.Gossip", "Gossip"),
];
const METHODS: [&str; 12] = [
    "Read",
    "Append",
    "BatchAppend",
    "Delete",
    "Tombstone",
    "Create",
    "Update",
    "GetInfo",
    "ReplayParked",
    "List",
    "RestartSubsystem",
    "GetSupportedMethods",
];

/// `Service.Method` for a known path, else `other`.
pub(crate) fn api_of(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match KNOWN.iter().find(|(full, _)| *full == service) {
        Some((_, short)) if METHODS.contains(&method) => format!("{short}.{method}"),
        _ => "other".to_string(),
    }
}

/// `FailedPrecondition` as `failed_precondition`, the form of the other error labels.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The layer.
#[derive(Debug, Clone)]
pub(crate) struct TimedLayer {
    pub(crate) broker: Broker,
}

impl<S> tower_layer::Layer<S> for TimedLayer {
    type Service = Timed<S>;

    fn layer(&self, inner: S) -> Timed<S> {
        Timed {
            inner,
            broker: self.broker.clone(),
        }
    }
}

/// A service whose calls are timed.
#[derive(Debug, Clone)]
pub(crate) struct Timed<S> {
    inner: S,
    broker: Broker,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Timed<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let api = api_of(request.uri().path());
        let started = Instant::now();
        let call = self.inner.call(request);
        let broker = self.broker.clone();
        Box::pin(async move {
            let response = call.await;
            let metrics = broker.metrics();
            metrics.observe_request("kurrentdb", &api, started.elapsed());
            // An error answered at once travels in the headers (a trailers-only response).
            let status = response
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            if status != 0 {
                metrics.request_error(
                    "kurrentdb",
                    &snake_case(&format!("{:?}", tonic::Code::from(status))),
                );
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::api_of;

    #[test]
    fn known_calls_are_named_and_others_are_one_label() {
        assert_eq!(
            api_of("/event_store.client.streams.Streams/Append"),
            "Streams.Append"
        );
        assert_eq!(
            api_of("/event_store.client.persistent_subscriptions.PersistentSubscriptions/ReplayParked"),
            "PersistentSubscriptions.ReplayParked"
        );
        assert_eq!(api_of("/event_store.client.streams.Streams/Whatever"), "other");
        assert_eq!(api_of("/x.Y/Append"), "other");
        assert_eq!(api_of(""), "other");
        assert_eq!(super::snake_case("FailedPrecondition"), "failed_precondition");
    }
}
