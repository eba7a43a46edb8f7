//! [`BenchError`], and the crate-private `bail!`/`err!` macros and [`Context`] trait that keep
//! call sites short: `?`, `bail!(...)`, `.context(...)`.

use std::fmt::Display;

/// What a benchmark can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments do not describe a valid run.
    #[error("{0}")]
    Config(String),
    /// A file, socket or process operation failed.
    #[error("{doing}")]
    Io {
        /// What was being done, e.g. `disk baseline in /tmp`.
        doing: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Anything else a run can fail with: a client or server refused, a task failed or hung.
    #[error("{0}")]
    Run(String),
}

impl BenchError {
    /// The message with its cause, on one line (for warnings printed by the library).
    pub(crate) fn describe(&self) -> String {
        match self {
            BenchError::Io { doing, source } => format!("{doing}: {source}"),
            other => other.to_string(),
        }
    }
}

/// The result of every fallible benchmark operation.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Returns early with a [`BenchError::Run`] built from a format string, or with a
/// [`BenchError::Config`] when the first argument is `config`.
macro_rules! bail {
    (config, $($arg:tt)+) => {
        return Err($crate::error::BenchError::Config(format!($($arg)+)))
    };
    ($($arg:tt)+) => {
        return Err($crate::error::BenchError::Run(format!($($arg)+)))
    };
}

/// A [`BenchError::Run`] built from a format string.
macro_rules! err {
    ($($arg:tt)+) => {
        $crate::error::BenchError::Run(format!($($arg)+))
    };
}

pub(crate) use {bail, err};

/// Errors that [`Context`] can wrap with what was being done.
pub(crate) trait IntoBenchError {
    /// This error as a [`BenchError`] that says it happened while `doing`.
    fn within(self, doing: String) -> BenchError;
}

impl IntoBenchError for std::io::Error {
    fn within(self, doing: String) -> BenchError {
        BenchError::Io { doing, source: self }
    }
}

impl IntoBenchError for BenchError {
    fn within(self, doing: String) -> BenchError {
        match self {
            BenchError::Config(message) => BenchError::Config(format!("{doing}: {message}")),
            BenchError::Io { doing: inner, source } => BenchError::Io {
                doing: format!("{doing}: {inner}"),
                source,
            },
            BenchError::Run(message) => BenchError::Run(format!("{doing}: {message}")),
        }
    }
}

/// Client errors, kept as text in a [`BenchError::Run`].
macro_rules! run_errors {
    ($($ty:ty),+ $(,)?) => {
        $(impl IntoBenchError for $ty {
            fn within(self, doing: String) -> BenchError {
                BenchError::Run(format!("{doing}: {self}"))
            }
        })+
    };
}

run_errors!(rdkafka::error::KafkaError, tokio::task::JoinError);
#[cfg(feature = "peers")]
run_errors!(lapin::Error, async_nats::ConnectError, serde_json::Error);

/// Says what was being done when an error happened: `.context("writing the chart")`.
pub(crate) trait Context<T> {
    /// Wraps the error with `doing`.
    fn context<C: Display>(self, doing: C) -> Result<T>;

    /// Wraps the error with what `doing` returns (evaluated only on error).
    fn with_context<C: Display, F: FnOnce() -> C>(self, doing: F) -> Result<T>;
}

impl<T, E: IntoBenchError> Context<T> for std::result::Result<T, E> {
    fn context<C: Display>(self, doing: C) -> Result<T> {
        self.map_err(|e| e.within(doing.to_string()))
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, doing: F) -> Result<T> {
        self.map_err(|e| e.within(doing().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails() -> Result<()> {
        bail!("{} went wrong", "it");
    }

    fn refuses() -> Result<()> {
        bail!(config, "--rate must be at least {}", 1);
    }

    #[test]
    fn macros_pick_the_variant() {
        assert!(matches!(fails(), Err(BenchError::Run(m)) if m == "it went wrong"));
        assert!(matches!(refuses(), Err(BenchError::Config(m)) if m == "--rate must be at least 1"));
        assert!(matches!(err!("x{}", 1), BenchError::Run(m) if m == "x1"));
    }

    #[test]
    fn context_prefixes_and_keeps_the_source() {
        let io: std::io::Result<()> = Err(std::io::Error::other("disk gone"));
        let e = io.context("writing").context("baseline").expect_err("an error");
        assert_eq!(e.to_string(), "baseline: writing");
        assert_eq!(e.describe(), "baseline: writing: disk gone");
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string),
            Some("disk gone".to_string())
        );
        let run = fails()
            .with_context(|| format!("level {}", "d0"))
            .expect_err("an error");
        assert_eq!(run.to_string(), "level d0: it went wrong");
    }
}
