//! `shop`: the reference shop. `cargo run -p shop` starts everything on an embedded broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rivulet_eventstore::{EventStore, EventStoreConfig};
use rivulet_sdk::aggregate::{EventStoreBackend, GrpcEventStore};
use rivulet_sdk::{Client, SubscribeOptions};
use shop::analytics;
use shop::app::{self, HttpState};
use shop::inventory::{demo_catalogue, Inventory};
use shop::notification::Mailer;
use shop::smtp_sink::{Sink, SinkConfig};

/// The Rivulet reference shop: order, inventory and notification services.
#[derive(Debug, Parser)]
#[command(name = "shop", about, long_about = None)]
struct Cli {
    /// Kafka bootstrap servers (Rivulet or Kafka); without it the shop runs on an embedded
    /// broker in --data-dir
    #[arg(
        short = 'b',
        long,
        env = "SHOP_BROKERS",
        global = true,
        value_name = "HOST:PORT,..."
    )]
    brokers: Option<String>,

    /// Where the embedded broker and the mail sink keep their files
    #[arg(long, default_value = "shop-data", global = true, value_name = "DIR")]
    data_dir: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole shop: HTTP order service, inventory, notification and an SMTP sink
    Run(RunArgs),
    /// Run only the notification service (needs --brokers)
    Notification {
        /// SMTP server the emails go to
        #[arg(long, value_name = "HOST:PORT")]
        smtp_server: String,
        /// Group session timeout: how soon a crashed instance's partitions move on
        #[arg(long, default_value_t = 10_000, value_name = "MS")]
        session_timeout_ms: u64,
    },
    /// Serve the Kafka protocol over the embedded broker in --data-dir
    Broker {
        /// Kafka listen address (port 0 picks one; the address is printed)
        #[arg(long, default_value = "127.0.0.1:9093")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// HTTP address of the order service, the mail list and the stock page
    #[arg(long, default_value = "127.0.0.1:8081")]
    http: SocketAddr,
    /// Address of the local SMTP sink
    #[arg(long, default_value = "127.0.0.1:2525")]
    smtp_listen: SocketAddr,
    /// Send email to this SMTP server instead of the local sink (no sink is started)
    #[arg(long, value_name = "HOST:PORT")]
    smtp_server: Option<String>,
    /// Also serve the Kafka protocol over the embedded broker here (for `rivulet` CLI)
    #[arg(long, value_name = "ADDR")]
    kafka_listen: Option<SocketAddr>,
    /// Low-stock threshold
    #[arg(long, default_value_t = 10)]
    low_stock: i64,
    /// Window of the sales-per-SKU job (event time)
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    sales_window_secs: u64,
    /// With --brokers: the event store holding the stock, over the KurrentDB gRPC API
    /// (`rivulet serve`'s --eventstore-listen). Without --brokers the stock lives in the
    /// embedded broker's event store.
    #[arg(
        long,
        env = "SHOP_EVENTSTORE",
        default_value = "127.0.0.1:2113",
        value_name = "HOST:PORT"
    )]
    eventstore: String,
}

const FROM: &str = "Rivulet Shop <shop@example.com>";

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn open_broker(data_dir: &std::path::Path) -> Result<rivulet_broker::Broker> {
    let config = rivulet_broker::BrokerConfig {
        data_dir: data_dir.join("broker"),
        ..rivulet_broker::BrokerConfig::default()
    };
    rivulet_broker::Broker::open(config)
        .with_context(|| format!("opening the embedded broker in {}", data_dir.display()))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "Cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

async fn run(cli: Cli) -> Result<()> {
    let command = cli.command.unwrap_or(Command::Run(RunArgs {
        http: "127.0.0.1:8081".parse()?,
        smtp_listen: "127.0.0.1:2525".parse()?,
        smtp_server: None,
        kafka_listen: None,
        low_stock: 10,
        sales_window_secs: 60,
        eventstore: "127.0.0.1:2113".into(),
    }));
    match command {
        Command::Broker { listen } => {
            let broker = open_broker(&cli.data_dir)?;
            let (addr, task) = app::serve_kafka(broker.clone(), listen, shutdown_signal()).await?;
            {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "kafka listening on {addr}")?;
                out.flush()?;
            }
            task.await.context("Kafka listener")??;
            broker.close().context("closing the broker")?;
            Ok(())
        }
        Command::Notification {
            smtp_server,
            session_timeout_ms,
        } => {
            let Some(brokers) = cli.brokers else {
                bail!("the notification service alone needs --brokers (the embedded broker lives in `shop run`)");
            };
            let client = Client::kafka(&brokers)?;
            let mailer = Mailer::new(&smtp_server, FROM)?;
            let options = SubscribeOptions {
                session_timeout: Duration::from_millis(session_timeout_ms),
                ..SubscribeOptions::default()
            };
            let sub = app::start_notification(&client, mailer, options).await?;
            tracing::info!(brokers = %brokers, smtp = %smtp_server, "Notification service running");
            shutdown_signal().await;
            let stats = sub.shutdown().await?;
            tracing::info!(?stats, "Notification service stopped");
            Ok(())
        }
        Command::Run(args) => run_all(cli.brokers, cli.data_dir, args).await,
    }
}

async fn run_all(brokers: Option<String>, data_dir: PathBuf, args: RunArgs) -> Result<()> {
    let mut broker = None;
    let (client, store): (Client, Arc<dyn EventStoreBackend>) = match &brokers {
        Some(b) => {
            let store = GrpcEventStore::connect(&args.eventstore)
                .await
                .with_context(|| format!("connecting to the event store at {}", args.eventstore))?;
            (Client::kafka(b)?, Arc::new(store))
        }
        None => {
            let dir = data_dir.clone();
            let (b, store) = tokio::task::spawn_blocking(move || -> Result<_> {
                let b = open_broker(&dir)?;
                let store = EventStore::open(b.clone(), EventStoreConfig::under(&dir))
                    .context("opening the embedded event store")?;
                Ok((b, store))
            })
            .await??;
            broker = Some(b.clone());
            (Client::embedded(b), Arc::new(store))
        }
    };
    if let (Some(b), Some(listen)) = (&broker, args.kafka_listen) {
        let (addr, _task) = app::serve_kafka(b.clone(), listen, shutdown_signal()).await?;
        tracing::info!(address = %addr, "Kafka listener over the embedded broker");
    }
    let mail_dir = data_dir.join("mail");
    let (smtp_server, sink_dir) = match &args.smtp_server {
        Some(s) => (s.clone(), None),
        None => {
            let sink = Sink::start(SinkConfig {
                listen: args.smtp_listen,
                mail_dir: mail_dir.clone(),
                delay: Duration::ZERO,
                connections_max: 64,
            })
            .await
            .with_context(|| format!("starting the SMTP sink on {}", args.smtp_listen))?;
            (sink.addr().to_string(), Some(mail_dir.clone()))
        }
    };
    let inventory = Inventory::new(store, demo_catalogue(), args.low_stock);
    let inventory_sub = app::start_inventory(&client, inventory.clone(), SubscribeOptions::default()).await?;
    let mailer = Mailer::new(&smtp_server, FROM)?;
    let notification_sub = app::start_notification(&client, mailer, SubscribeOptions::default()).await?;
    analytics::publish_catalogue(
        &client,
        &analytics::demo_products(&demo_catalogue(), args.low_stock),
    )
    .await?;
    let jobs = analytics::start(
        &client,
        Duration::from_secs(args.sales_window_secs),
        &data_dir.join("jobs"),
    )
    .await?;
    let router = app::router(HttpState {
        client: client.clone(),
        inventory: Some(inventory),
        mail_dir: sink_dir,
    });
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding the HTTP address {}", args.http))?;
    tracing::info!(
        http = %args.http,
        smtp = %smtp_server,
        broker = %brokers.as_deref().unwrap_or("embedded"),
        "Shop running: POST /orders, GET /mail, GET /stock, GET /sales, GET /alerts"
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("Stopping: finishing events in flight");
    let inv = inventory_sub.shutdown().await;
    let notif = notification_sub.shutdown().await;
    let analytics = jobs.shutdown().await;
    if let Some(b) = broker {
        tokio::task::spawn_blocking(move || b.close()).await??;
    }
    inv?;
    notif?;
    analytics?;
    tracing::info!("Shop stopped");
    Ok(())
}
