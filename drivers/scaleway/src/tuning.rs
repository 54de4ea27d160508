//! How patient the drivers are, from one-scaleway's environment variables:
//! `ONE_SCALEWAY_TIMEOUT` (seconds per request, default 30),
//! `ONE_SCALEWAY_RETRY_BASE_MS` (first backoff, default 1000),
//! `ONE_SCALEWAY_POLL_MS` (how often a transition is polled, default 2000)
//! and `ONE_SCALEWAY_WAIT` (seconds to wait for a transition, default 180).

use std::time::Duration;

use crate::client::{Options, RetryPolicy};
use crate::config::ConfigError;
use crate::wait::WaitPolicy;

/// Client options and the waiters' policy.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub options: Options,
    pub wait: WaitPolicy,
}

impl Tuning {
    /// Reads the settings; `env` reads an environment variable.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let num = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match env(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError(format!("{name}={v:?} is not a whole number"))),
            }
        };
        let defaults = Options::default();
        let options = Options {
            request_timeout: Duration::from_secs(num("ONE_SCALEWAY_TIMEOUT", 30)?),
            retry: RetryPolicy {
                base_delay: Duration::from_millis(num("ONE_SCALEWAY_RETRY_BASE_MS", 1000)?),
                ..defaults.retry.clone()
            },
            ..defaults
        };
        let wait = WaitPolicy::new(
            Duration::from_millis(num("ONE_SCALEWAY_POLL_MS", 2000)?),
            Duration::from_secs(num("ONE_SCALEWAY_WAIT", 180)?),
        );
        Ok(Self { options, wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let t = Tuning::from_env(&|_| None).unwrap();
        assert_eq!(
            (t.options.request_timeout, t.wait.interval),
            (Duration::from_secs(30), Duration::from_secs(2))
        );
        let t = Tuning::from_env(&|k| (k == "ONE_SCALEWAY_POLL_MS").then(|| "10".to_owned())).unwrap();
        assert_eq!(t.wait.interval, Duration::from_millis(10));
        let err = Tuning::from_env(&|k| (k == "ONE_SCALEWAY_WAIT").then(|| "soon".to_owned())).unwrap_err();
        assert_eq!(err.0, "ONE_SCALEWAY_WAIT=\"soon\" is not a whole number");
    }
}
