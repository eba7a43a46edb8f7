//! The Kafka connection flags (the same as the `rivulet` operator commands take) and the admin
//! helpers the Kafka driver needs: is the broker Rivulet, create and delete the topic.

use std::time::Duration;

use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::{bail, err, BenchError, Context, Result};
use crate::Format;

/// A broker config only Rivulet reports; its presence identifies a Rivulet broker.
const RIVULET_VERSION_CONFIG: &str = "rivulet.version";

/// Connection and output settings of `rivulet bench kafka`.
#[derive(Debug, Clone, Args)]
pub struct KafkaConn {
    /// Kafka bootstrap servers, comma-separated host:port
    #[arg(
        short = 'b',
        long,
        env = "RIVULET_BROKERS",
        default_value = "localhost:9092",
        global = true,
        value_name = "HOST:PORT,..."
    )]
    pub brokers: String,

    /// Output format: text or json (consume always prints one JSON object per record unless -f is given)
    #[arg(
        long,
        value_enum,
        default_value = "text",
        global = true,
        hide_possible_values = true
    )]
    pub format: Format,

    /// How long to wait for the broker on each request, in seconds
    #[arg(long, default_value_t = 10, global = true, value_name = "SECS")]
    pub timeout: u64,

    /// librdkafka client property KEY=VALUE, applied last (repeatable), e.g.
    /// -X security.protocol=sasl_plaintext -X sasl.mechanism=PLAIN
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE")]
    pub client_properties: Vec<String>,
}

impl KafkaConn {
    /// Settings to reach the broker at `brokers` with the defaults of the command line.
    pub fn to(brokers: &str) -> KafkaConn {
        KafkaConn {
            brokers: brokers.to_string(),
            format: Format::Text,
            timeout: 10,
            client_properties: Vec::new(),
        }
    }

    /// The request timeout.
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    /// Client settings every client gets.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", "rivulet-cli")
            .set("socket.timeout.ms", (self.timeout().as_millis()).to_string())
            .set("allow.auto.create.topics", "false");
        cfg
    }

    /// `cfg` with the `-X` properties applied on top.
    pub(crate) fn finish(&self, mut cfg: ClientConfig) -> Result<ClientConfig> {
        for property in &self.client_properties {
            match property.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    cfg.set(k.trim(), v);
                }
                _ => bail!(config, "invalid -X {property:?}: expected KEY=VALUE"),
            }
        }
        Ok(cfg)
    }

    fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.finish(self.client_config())?
            .create()
            .map_err(|e| err!("cannot create a Kafka admin client: {e}; check -b/--brokers and -X"))
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout()))
            .operation_timeout(Some(self.timeout()))
    }

    /// Turns a client error into a message that says what failed and what to do.
    pub(crate) fn error(&self, e: KafkaError, doing: &str) -> BenchError {
        let code = match &e {
            KafkaError::AdminOp(code) => Some(*code),
            _ => e.rdkafka_error_code(),
        };
        match code {
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::BrokerNotAvailable
                | RDKafkaErrorCode::NetworkException,
            ) => err!(
                "{doing}: no broker at {} answered within {}s ({e}); check that the server is \
                 running and that -b/--brokers (or RIVULET_BROKERS) names its Kafka address",
                self.brokers,
                self.timeout().as_secs()
            ),
            Some(RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion) => {
                err!("{doing}: the broker does not implement the Kafka request this needs ({e})")
            }
            _ => err!("{doing}: {e}"),
        }
    }

    /// True when the broker reports Rivulet's version config. Blocks (metadata request).
    pub(crate) fn broker_is_rivulet(&self) -> Result<bool> {
        let mut cfg = self.client_config();
        cfg.set("enable.auto.commit", "false");
        let consumer: BaseConsumer = self
            .finish(cfg)?
            .create()
            .map_err(|e| err!("cannot create a Kafka client: {e}; check -b/--brokers and -X"))?;
        let metadata = consumer
            .fetch_metadata(None, self.timeout())
            .map_err(|e| self.error(e, "fetching cluster metadata"))?;
        let Some(broker) = metadata.brokers().first() else {
            bail!("the cluster metadata lists no brokers");
        };
        let admin = self.admin()?;
        let spec = ResourceSpecifier::Broker(broker.id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let results = runtime.block_on(admin.describe_configs([&spec], &self.admin_options()));
        Ok(match results {
            Ok(results) => results
                .into_iter()
                .next()
                .and_then(|r| r.ok())
                .is_some_and(|r| r.get(RIVULET_VERSION_CONFIG).is_some()),
            Err(_) => false,
        })
    }

    /// Creates `topic` with `partitions` and the `KEY=VALUE` `configs`.
    pub(crate) async fn create_topics(
        &self,
        topics: &[String],
        partitions: usize,
        configs: &[String],
    ) -> Result<()> {
        let pairs = configs
            .iter()
            .map(|c| parse_key_value(c))
            .collect::<Result<Vec<_>>>()?;
        let partitions = i32::try_from(partitions).map_err(|_| err!("too many partitions"))?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| {
                let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
                for (k, v) in &pairs {
                    new_topic = new_topic.set(k, v);
                }
                new_topic
            })
            .collect();
        let admin = self.admin()?;
        let results = admin
            .create_topics(new_topics.iter(), &self.admin_options())
            .await
            .map_err(|e| self.error(e, "creating the benchmark topic"))?;
        for result in results {
            if let Err((name, code)) = result {
                bail!("creating topic {name}: {}", with_hint(code));
            }
        }
        Ok(())
    }

    /// Deletes `topics`.
    pub(crate) async fn delete_topics(&self, topics: &[String]) -> Result<()> {
        let admin = self.admin()?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let results = admin
            .delete_topics(&names, &self.admin_options())
            .await
            .map_err(|e| self.error(e, "deleting the benchmark topic"))?;
        for result in results {
            if let Err((name, code)) = result {
                bail!("deleting topic {name}: {}", with_hint(code));
            }
        }
        Ok(())
    }
}

/// `KEY=VALUE` split at the first `=`, the key trimmed.
pub(crate) fn parse_key_value(s: &str) -> Result<(&str, &str)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v)),
        _ => bail!(config, "invalid setting {s:?}: expected KEY=VALUE"),
    }
}

/// The code and, for the codes topic creation and deletion meet, what to do about it (the
/// same hints as the `rivulet topic` command's).
fn with_hint(code: RDKafkaErrorCode) -> String {
    let hint = match code {
        RDKafkaErrorCode::UnknownTopicOrPartition => "list topics with `rivulet topic list`",
        RDKafkaErrorCode::InvalidPartitions => "use a partition count of at least 1 (-p N)",
        RDKafkaErrorCode::InvalidReplicationFactor => {
            "use a replication factor no larger than the number of brokers (-r N)"
        }
        RDKafkaErrorCode::InvalidConfig => "check the -c key=value settings",
        RDKafkaErrorCode::InvalidTopic => {
            "topic names use letters, digits, '.', '_' and '-' (at most 249 characters)"
        }
        RDKafkaErrorCode::PolicyViolation => "the broker refused by policy or a limit",
        RDKafkaErrorCode::UnsupportedVersion | RDKafkaErrorCode::UnsupportedFeature => {
            "the broker does not implement this request"
        }
        _ => "",
    };
    if hint.is_empty() {
        code.to_string()
    } else {
        format!("{code}; {hint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_hints_codes() {
        assert_eq!(
            parse_key_value(" fsync.policy =none").ok(),
            Some(("fsync.policy", "none"))
        );
        assert!(matches!(parse_key_value("=x"), Err(BenchError::Config(_))));
        assert!(with_hint(RDKafkaErrorCode::InvalidPartitions).contains("-p N"));
        assert_eq!(
            with_hint(RDKafkaErrorCode::TopicAlreadyExists),
            RDKafkaErrorCode::TopicAlreadyExists.to_string()
        );
    }
}
