//! `rivulet serve`: the server lifecycle. Settings are resolved in [`settings`] first.

mod settings;

use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use rivulet_broker::Broker;
use rivulet_kafka::Server;
pub use settings::ServeArgs;
use settings::{LogFormat, Settings};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// With `--auth` and no user yet, creates the first from RIVULET_BOOTSTRAP_USER and
/// RIVULET_BOOTSTRAP_PASSWORD, or refuses to start: nobody could log in.
fn bootstrap_user(broker: &Broker) -> Result<()> {
    if !broker.auth_required() || !broker.users().is_empty() {
        return Ok(());
    }
    let (Ok(user), Ok(password)) = (
        std::env::var("RIVULET_BOOTSTRAP_USER"),
        std::env::var("RIVULET_BOOTSTRAP_PASSWORD"),
    ) else {
        anyhow::bail!(
            "--auth is on and there are no users yet: set RIVULET_BOOTSTRAP_USER and \
             RIVULET_BOOTSTRAP_PASSWORD to create the first"
        );
    };
    if password.len() < 8 {
        anyhow::bail!("RIVULET_BOOTSTRAP_PASSWORD must hold at least 8 characters");
    }
    broker
        .user_set_password(&user, &password)
        .context("creating the bootstrap user")?;
    grant_everything(broker, &user)?;
    tracing::info!(%user, "Created the first user, allowed everything by ACLs on every resource");
    Ok(())
}

/// ACLs that allow `user` every operation on every resource: the first user administers
/// the broker (the bindings can be listed and removed like any other).
fn grant_everything(broker: &Broker, user: &str) -> Result<()> {
    use rivulet_broker::acl::{AclBinding, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME};
    let kinds = [
        (ResourceType::Cluster, CLUSTER_NAME),
        (ResourceType::Topic, "*"),
        (ResourceType::Group, "*"),
        (ResourceType::TransactionalId, "*"),
    ];
    let bindings = kinds
        .into_iter()
        .map(|(resource_type, name)| AclBinding {
            resource_type,
            resource_name: name.to_string(),
            pattern_type: PatternType::Literal,
            principal: format!("User:{user}"),
            host: "*".to_string(),
            operation: Operation::All,
            permission: Permission::Allow,
        })
        .collect();
    for result in broker
        .acl_create(bindings)
        .context("storing the first user's ACLs")?
    {
        result.context("the first user's ACLs")?;
    }
    Ok(())
}

/// Runs `rivulet serve` until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> Result<()> {
    let settings = Settings::resolve(&args)?;
    init_logging(settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(mut settings: Settings) -> Result<()> {
    let data_dir = settings.broker.data_dir.clone();
    let broker_config = settings.broker.clone();
    let broker = tokio::task::spawn_blocking(move || Broker::open(broker_config))
        .await
        .context("opening the data directory")?
        .with_context(|| format!("opening data directory {}", data_dir.display()))?;
    bootstrap_user(&broker)?;
    let store_config = rivulet_eventstore::EventStoreConfig::under(&data_dir);
    let store_broker = broker.clone();
    let event_store =
        tokio::task::spawn_blocking(move || rivulet_eventstore::EventStore::open(store_broker, store_config))
            .await
            .context("opening the event store")?
            .context("opening the event store")?;
    settings.gateway.event_store = Some(event_store.clone());
    let groups = rivulet_eventstore::PersistentSubscriptions::start(event_store.clone())
        .await
        .context("starting the event store's persistent subscriptions")?;
    settings.gateway.persistent_subscriptions = Some(groups.clone());
    let grpc_tls = match &settings.tls {
        Some(files) => Some(rivulet_tls::acceptor(files, &[b"h2"]).context("TLS")?),
        None => None,
    };
    let https = match &settings.tls {
        Some(files) => {
            let tls = rivulet_tls::acceptor(files, &[]).context("TLS")?;
            settings.kafka.tls = Some(tls.clone());
            settings.amqp.config.tls = Some(tls);
            tracing::info!(cert = %files.cert.display(), client_certificates = files.client_ca.is_some(), "TLS on every listener");
            Some(rivulet_tls::acceptor(files, &[b"http/1.1"]).context("TLS")?)
        }
        None => None,
    };
    // Bind first so that an advertised port follows a listen port of 0.
    let listeners = bind_all(&settings.kafka.listen).await?;
    let first = listeners[0].local_addr().context("listener address")?;
    let (host, port) = settings.advertised(first)?;
    settings.kafka.handler.advertised_host = host.clone();
    settings.kafka.handler.advertised_port = port;
    // A further listener of another security protocol sends its clients back to itself;
    // one of the same protocol (IPv4 and IPv6 loopback) advertises as the first.
    let auth = broker.auth_required();
    for (i, listener) in listeners.iter().enumerate().skip(1) {
        if settings.kafka.protocol(i, auth) == settings.kafka.protocol(0, auth) {
            settings.kafka.handler.advertised_more.push((host.clone(), port));
            continue;
        }
        let bound = listener.local_addr().context("listener address")?;
        let host = if bound.ip().is_unspecified() {
            "localhost".to_string()
        } else {
            bound.ip().to_string()
        };
        settings.kafka.handler.advertised_more.push((host, bound.port()));
    }
    let server = Server::from_listeners(listeners, settings.kafka, broker.clone())
        .context("starting the Kafka listener")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (amqp_listeners, amqp_down) = bind_amqp(&settings.amqp).await?;
    let amqp =
        rivulet_amqp::Server::from_listeners(amqp_listeners, settings.amqp.config.clone(), broker.clone());
    for addr in amqp.local_addrs() {
        tracing::info!(address = %addr, "Listening for AMQP 0-9-1 clients");
    }
    let amqp_addresses: Vec<String> = amqp.local_addrs().iter().map(ToString::to_string).collect();
    let amqp_task = tokio::spawn(amqp.run(stop_rx.clone()));
    let gateway = match settings.http {
        Some(addr) => {
            settings.gateway.kafka_addresses = server.local_addrs().iter().map(ToString::to_string).collect();
            settings.gateway.amqp_addresses = amqp_addresses;
            settings.gateway.amqp_down = amqp_down;
            Some(start_gateway(addr, broker.clone(), settings.gateway, https, stop_rx.clone()).await?)
        }
        None => None,
    };
    let eventstore_task = match settings.eventstore {
        Some((addr, explicit)) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let mut stop = stop_rx.clone();
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let serving = rivulet_eventstore_grpc::serve(
                    listener,
                    broker.clone(),
                    event_store.clone(),
                    groups,
                    grpc_tls,
                    shutdown,
                );
                Some(tokio::spawn(serving))
            }
            Err(e) if !explicit => {
                tracing::warn!(address = %addr, error = %e, "Event store gRPC listener not started: the default address is unavailable; pass --eventstore-listen to choose another");
                None
            }
            Err(e) => return Err(e).with_context(|| format!("event store gRPC: listening on {addr}")),
        },
        None => None,
    };
    let signalled = broker.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Long polls and event streams answer now, so connections drain quickly.
        signalled.shut_down();
        let _ = stop_tx.send(true);
    });
    for addr in server.local_addrs() {
        tracing::info!(address = %addr, "Listening for Kafka clients");
    }
    tracing::info!(advertised = %format!("{host}:{port}"), data_dir = %data_dir.display(), "Rivulet is serving");
    let mut stop = stop_rx.clone();
    server
        .run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("serving")?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), amqp_task).await;
    if let Some(task) = eventstore_task {
        // Subscriptions end at shutdown; give the listener a moment, no more.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
    }
    if let Some(gateway) = gateway {
        // Event streams end at shutdown; give the gateway a moment, no more.
        match tokio::time::timeout(std::time::Duration::from_secs(2), gateway).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP gateway stopped with an error"),
            Err(_) => tracing::info!("HTTP gateway: closing open streams"),
            _ => {}
        }
    }
    match tokio::task::spawn_blocking(move || event_store.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Syncing the event store's index failed; it is rebuilt from the log at start")
        }
        Err(e) => tracing::warn!(error = %e, "Closing the event store failed"),
    }
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .context("closing logs")?
        .context("flushing logs")?;
    tracing::info!("Rivulet stopped");
    Ok(())
}

async fn start_gateway(
    addr: SocketAddr,
    broker: Broker,
    config: rivulet_http::GatewayConfig,
    tls: Option<rivulet_tls::Acceptor>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("HTTP gateway: listening on {addr}"))?;
    let local = listener.local_addr().context("HTTP listener address")?;
    tracing::info!(address = %local, tls = tls.is_some(), "Listening for HTTP");
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Ok(tokio::spawn(async move {
        match tls {
            Some(tls) => rivulet_http::serve_tls(listener, broker, config, tls, stopped).await,
            None => rivulet_http::serve(listener, broker, config, stopped).await,
        }
    }))
}

async fn bind_all(listen: &[SocketAddr]) -> Result<Vec<tokio::net::TcpListener>> {
    let mut out = Vec::new();
    let mut port = None;
    for addr in listen {
        let mut addr = *addr;
        // With port 0, every listener shares the port the first one got.
        if addr.port() == 0 {
            if let Some(p) = port {
                addr.set_port(p);
            }
        }
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        port.get_or_insert(l.local_addr().map(|a| a.port()).unwrap_or(0));
        out.push(l);
    }
    Ok(out)
}

/// Binds the AMQP addresses. A busy default address only warns (RabbitMQ may hold 5672 on
/// the same machine): the other protocols are served and the listener shows as down. A busy
/// address the user asked for is an error.
async fn bind_amqp(
    amqp: &settings::AmqpSettings,
) -> Result<(Vec<tokio::net::TcpListener>, Vec<(String, String)>)> {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for addr in &amqp.listen {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => up.push(l),
            Err(e) if !amqp.explicit => {
                tracing::warn!(address = %addr, error = %e, "AMQP listener not started: the default address is unavailable; pass --amqp-listen to choose another");
                down.push((addr.to_string(), e.to_string()));
            }
            Err(e) => return Err(e).with_context(|| format!("AMQP: listening on {addr}")),
        }
    }
    Ok((up, down))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("Shutdown requested");
}
