//! A small client of the broker's HTTP admin API, for the commands the Kafka protocol has no
//! words for (queues, exchanges, users).

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use clap::Args;
use http_body_util::{BodyExt, Full};
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
    /// User to log in as when the broker requires a login (`rivulet serve --auth`)
    #[arg(
        id = "http_user",
        long = "http-user",
        env = "RIVULET_HTTP_USER",
        global = true,
        value_name = "USER"
    )]
    pub user: Option<String>,
    /// That user's password (prefer the environment: arguments show in process lists)
    #[arg(
        id = "http_password",
        long = "http-password",
        env = "RIVULET_HTTP_PASSWORD",
        hide_env_values = true,
        global = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
    /// PEM CA certificates to trust for an `https://` address (`rivulet serve --tls-cert`)
    #[arg(
        id = "http_ca",
        long = "http-ca",
        env = "RIVULET_HTTP_CA",
        global = true,
        value_name = "FILE"
    )]
    pub ca: Option<std::path::PathBuf>,
}

impl HttpArgs {
    /// Sends `method path` and returns the JSON body of a 2xx answer (`Null` when empty);
    /// an error answer becomes an error carrying the broker's message.
    pub fn call(&self, method: &str, path: &str, timeout: std::time::Duration) -> Result<Value> {
        self.call_with(method, path, None, timeout)
    }

    /// [`HttpArgs::call`] with a JSON body.
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: std::time::Duration,
    ) -> Result<Value> {
        let runtime = super::runtime()?;
        runtime.block_on(async {
            tokio::time::timeout(timeout, self.send(method, path, body))
                .await
                .map_err(|_| anyhow!("no answer from {} within {timeout:?}", self.address))?
        })
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let https = self.address.starts_with("https://");
        let address = self
            .address
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to the HTTP gateway at {address} (set --http)"))?;
        if !https {
            return self
                .exchange(TokioIo::new(stream), address, method, path, body)
                .await;
        }
        let ca = self
            .ca
            .as_ref()
            .context("an https:// address needs --http-ca (the CA that signed the server's certificate)")?;
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tls = rivulet_tls::connect_client(stream, host, ca).await?;
        self.exchange(TokioIo::new(tls), address, method, path, body)
            .await
    }

    async fn exchange<I>(
        &self,
        io: I,
        address: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", address);
        if let Some(user) = &self.user {
            let pair = format!("{user}:{}", self.password.as_deref().unwrap_or(""));
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.header("authorization", format!("Basic {encoded}"));
        }
        let bytes = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Bytes::from(serde_json::to_vec(v).context("encoding the request")?)
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(bytes)).context("building the request")?;
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
