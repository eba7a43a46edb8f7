//! A small client of the broker's HTTP admin API, for the commands the Kafka protocol has no
//! words for (queues, exchanges).

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where the HTTP admin API is.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address of the broker's HTTP gateway (`rivulet serve --http-listen`)
    #[arg(
        long = "http",
        env = "RIVULET_HTTP",
        default_value = "127.0.0.1:8080",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub address: String,
}

impl HttpArgs {
    /// Sends `method path` and returns the JSON body of a 2xx answer (`Null` when empty);
    /// an error answer becomes an error carrying the broker's message.
    pub fn call(&self, method: &str, path: &str, timeout: std::time::Duration) -> Result<Value> {
        let runtime = super::runtime()?;
        runtime.block_on(async {
            tokio::time::timeout(timeout, self.send(method, path))
                .await
                .map_err(|_| anyhow!("no answer from {} within {timeout:?}", self.address))?
        })
    }

    async fn send(&self, method: &str, path: &str) -> Result<Value> {
        let address = self.address.trim_start_matches("http://").trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to the HTTP gateway at {address} (set --http)"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", address)
            .body(Empty::<Bytes>::new())
            .context("building the request")?;
        let response = sender
            .send_request(request)
            .await
            .context("sending the request")?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).with_context(|| format!("answer to {method} {path} is not JSON"))?
        };
        if !status.is_success() {
            let message = value["message"].as_str().unwrap_or("no message");
            bail!("{method} {path}: {status}: {message}");
        }
        Ok(value)
    }
}
