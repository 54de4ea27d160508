//! Waiting for asynchronous transitions: poll until a wanted state, fail
//! fast on a terminal unwanted one, give up cleanly after a timeout with an
//! error naming the resource and the state it was stuck in.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often and how long to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    pub interval: Duration,
    pub timeout: Duration,
}

impl WaitPolicy {
    pub const fn new(interval: Duration, timeout: Duration) -> Self {
        Self { interval, timeout }
    }
}

/// What a poll saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The wanted state.
    Done,
    /// Still moving.
    Pending,
    /// A terminal state that is not the wanted one.
    Failed,
}

/// Polls `poll` until `judge` says done (returns the last value), failed, or
/// the policy's timeout passes. `describe` names the state for messages.
pub fn wait_until<T>(
    resource: &str,
    id: &str,
    wanted: &str,
    policy: WaitPolicy,
    mut poll: impl FnMut() -> Result<T>,
    judge: impl Fn(&T) -> Progress,
    describe: impl Fn(&T) -> String,
) -> Result<T> {
    let started = Instant::now();
    loop {
        let value = poll()?;
        match judge(&value) {
            Progress::Done => return Ok(value),
            Progress::Failed => {
                return Err(Error::WaitFailed {
                    resource: resource.to_owned(),
                    id: id.to_owned(),
                    state: describe(&value),
                    wanted: wanted.to_owned(),
                });
            }
            Progress::Pending => {}
        }
        let waited = started.elapsed();
        if waited + policy.interval > policy.timeout {
            return Err(Error::WaitTimeout {
                resource: resource.to_owned(),
                id: id.to_owned(),
                state: describe(&value),
                waited: waited.max(policy.timeout),
            });
        }
        std::thread::sleep(policy.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn waits_until_done() {
        let n = Cell::new(0);
        let policy = WaitPolicy::new(Duration::from_millis(1), Duration::from_secs(5));
        let got = wait_until(
            "flexible IP",
            "f1",
            "attached",
            policy,
            || {
                n.set(n.get() + 1);
                Ok(n.get())
            },
            |v| if *v >= 3 { Progress::Done } else { Progress::Pending },
            |v| format!("poll {v}"),
        )
        .unwrap();
        assert_eq!(got, 3);
    }

    #[test]
    fn times_out_naming_the_state() {
        let policy = WaitPolicy::new(Duration::from_millis(5), Duration::from_millis(30));
        let err = wait_until(
            "server",
            "s1",
            "ready",
            policy,
            || Ok(()),
            |_| Progress::Pending,
            |_| "delivering".into(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gave up waiting for Scaleway server s1: still delivering after"),
            "{err}"
        );
    }

    #[test]
    fn fails_fast_on_a_terminal_state() {
        let policy = WaitPolicy::new(Duration::from_secs(60), Duration::from_secs(600));
        let err = wait_until(
            "server",
            "s1",
            "ready",
            policy,
            || Ok(()),
            |_| Progress::Failed,
            |_| "error".into(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "Scaleway server s1 ended error instead of ready");
    }
}
