//! The HTTP side: one blocking client, retries, pagination, and creates
//! that are reconciled instead of blindly retried.
//!
//! Retry policy (see the Scaleway reference, section 3): exponential backoff
//! with full jitter, bounded in attempts and in total time, honouring
//! `Retry-After` when the answer has one.
//! - Reads and idempotent writes (GET, PUT, PATCH, DELETE, and the POSTs
//!   that are idempotent such as attach/detach) are retried on 429, 5xx
//!   (except 501), timeouts and connection failures.
//! - Creates (a POST that makes a new resource) are retried only when the
//!   request surely did not take effect: a 429 (rejected at the gateway) or
//!   a connection that could not be opened. After an ambiguous failure (a
//!   5xx, a timeout, a connection reset) [`Client::create_reconciled`]
//!   looks for the resource (by its unique tag or name) before deciding to
//!   POST again, because the real API is not idempotent and a blind retry
//!   can buy a second server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::Client as HttpClient;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Credentials;
use crate::error::{ApiError, Error, Result};

/// How hard to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles on each attempt.
    pub base_delay: Duration,
    /// Largest single wait.
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// No request starts after this instant, and none outlives it (each
    /// one's timeout is cut to what is left): an action that must end in
    /// time (oned drops an IPAM answer after 90 s) fails instead.
    pub deadline: Option<Instant>,
    /// Sent as `User-Agent`.
    pub user_agent: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            deadline: None,
            user_agent: format!(
                "one-scaleway/{} ({}; {})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        }
    }
}

/// Receives one line about each retry or reconciliation (for the drivers'
/// `WARN:` logs). Never given a secret.
pub type Notifier = Arc<dyn Fn(&str) + Send + Sync>;

/// Whether a call may be repeated as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Repeating it is harmless: retry on 429, 5xx, timeouts, resets.
    Idempotent,
    /// It creates something: retry only when it surely did not happen.
    Create,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub request_id: Option<String>,
}

/// The Scaleway API client.
pub struct Client {
    http: HttpClient,
    credentials: Credentials,
    options: Options,
    rng: AtomicU64,
    notifier: Option<Notifier>,
    calls: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_url", &self.credentials.api_url)
            .finish_non_exhaustive()
    }
}

fn transport_error(method: &Method, path: &str, e: &reqwest::Error) -> Error {
    // A connection that could not be opened never reached the API.
    let maybe_applied = !e.is_connect();
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        // reqwest's chain names the cause (reset, closed); the URL it may
        // include holds no secret (the key travels in a header).
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        reason
    };
    Error::Transport {
        method: method.to_string(),
        path: path.to_owned(),
        reason,
        maybe_applied,
    }
}

impl Client {
    /// A client for these credentials.
    pub fn new(credentials: Credentials, options: Options) -> Result<Self> {
        let mut headers = HeaderMap::new();
        let mut token = HeaderValue::from_str(credentials.secret_key.expose())
            .map_err(|_| Error::Refused("the secret key cannot be sent as a header".to_owned()))?;
        token.set_sensitive(true);
        headers.insert("X-Auth-Token", token);
        let http = HttpClient::builder()
            .default_headers(headers)
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            // A redirect would carry X-Auth-Token to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Refused(format!("cannot set up the HTTP client: {e}")))?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Ok(Self {
            http,
            credentials,
            options,
            rng: AtomicU64::new(seed | 1),
            notifier: None,
            calls: AtomicU64::new(0),
        })
    }

    /// Sets who hears about retries.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// How many HTTP requests this client has sent.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(crate) fn notify(&self, line: &str) {
        if let Some(n) = &self.notifier {
            n(line);
        }
    }

    /// A random number in `0..bound` (xorshift; jitter needs no more).
    fn random_below(&self, bound: u64) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        if bound == 0 { 0 } else { x % bound }
    }

    /// Full-jitter backoff before attempt `attempt + 1`.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let p = &self.options.retry;
        let ceiling = p.base_delay.saturating_mul(1u32 << attempt.min(16)).min(p.max_delay);
        Duration::from_millis(self.random_below(ceiling.as_millis() as u64 + 1))
    }

    fn send_once(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let left = match self.options.deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Transport {
                        method: method.to_string(),
                        path: path.to_owned(),
                        reason: "the action's time is up, the request was not sent".to_owned(),
                        maybe_applied: false,
                    });
                }
                left.min(self.options.request_timeout)
            }
            None => self.options.request_timeout,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{path}", self.credentials.api_url);
        let mut request = self.http.request(method.clone(), url).query(query).timeout(left);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let response = request.send().map_err(|e| transport_error(method, path, &e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("x-request-id");
        let retry_after = header(RETRY_AFTER.as_str())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().map_err(|e| transport_error(method, path, &e))?;
        if (200..300).contains(&status) {
            Ok(Answer {
                status,
                body: bytes.to_vec(),
                request_id,
            })
        } else {
            Err(Error::from(ApiError::from_response(
                method.as_str(),
                path,
                status,
                &bytes,
                request_id,
                retry_after,
            )))
        }
    }

    /// Sends a request, retrying as `retry` allows.
    pub fn call(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Answer> {
        let started = Instant::now();
        let policy = &self.options.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send_once(method, path, query, body) {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            let (retryable, hinted) = match (&error, retry) {
                (Error::Api(api), Retry::Idempotent) => (api.is_retryable(), api.retry_after),
                (Error::Api(api), Retry::Create) => (api.status == 429, api.retry_after),
                (Error::Transport { .. }, Retry::Idempotent) => (true, None),
                (Error::Transport { maybe_applied, .. }, Retry::Create) => (!maybe_applied, None),
                _ => (false, None),
            };
            if !retryable || attempt >= policy.max_attempts {
                return Err(error);
            }
            let wait = hinted.unwrap_or_else(|| self.backoff(attempt)).min(policy.max_delay);
            if started.elapsed() + wait > policy.max_elapsed
                || self.options.deadline.is_some_and(|d| Instant::now() + wait >= d)
            {
                return Err(error);
            }
            self.notify(&format!(
                "{error}; retrying in {} ms (attempt {} of {})",
                wait.as_millis(),
                attempt + 1,
                policy.max_attempts
            ));
            std::thread::sleep(wait);
        }
    }

    /// Calls and decodes the JSON answer.
    pub fn call_json<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<T> {
        let answer = self.call(method, path, query, body, retry)?;
        serde_json::from_slice(&answer.body).map_err(|e| Error::Decode {
            method: method.to_string(),
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// GET and decode.
    pub fn get<T: DeserializeOwned>(&self, path: &str, query: &[(String, String)]) -> Result<T> {
        self.call_json(&Method::GET, path, query, None, Retry::Idempotent)
    }

    /// Every item of a paginated list: pages of 100 until the list is
    /// exhausted (an empty page, or `total_count` items seen). Items that
    /// show up twice (the list shifted between pages) are kept once.
    pub fn list_all<T: DeserializeOwned>(&self, path: &str, query: &[(String, String)], key: &str) -> Result<Vec<T>> {
        let mut seen_ids = std::collections::HashSet::new();
        let mut items = Vec::new();
        let mut seen = 0u64;
        for page in 1u32.. {
            let mut q = query.to_vec();
            q.push(("page".to_owned(), page.to_string()));
            q.push(("page_size".to_owned(), "100".to_owned()));
            let body: Value = self.get(path, &q)?;
            let total = body.get("total_count").and_then(Value::as_u64);
            let entries = match body.get(key) {
                Some(Value::Array(a)) => a.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(Error::Decode {
                        method: "GET".to_owned(),
                        path: path.to_owned(),
                        reason: format!("`{key}` is not a list"),
                    });
                }
            };
            if entries.is_empty() {
                break;
            }
            seen += entries.len() as u64;
            for entry in entries {
                if let Some(id) = entry.get("id").and_then(Value::as_str)
                    && !seen_ids.insert(id.to_owned())
                {
                    continue;
                }
                items.push(serde_json::from_value(entry).map_err(|e| Error::Decode {
                    method: "GET".to_owned(),
                    path: path.to_owned(),
                    reason: format!("an entry of `{key}`: {e}"),
                })?);
            }
            if total.is_some_and(|t| seen >= t) || page >= 10_000 {
                break;
            }
        }
        Ok(items)
    }

    /// Creates a resource without ever creating it twice: `post` is sent;
    /// after a failure that may have been applied (5xx, timeout, reset),
    /// `find` looks for the resource (by its unique tag or name) a few
    /// times, and only when it is surely absent is `post` sent again.
    pub fn create_reconciled<T>(
        &self,
        what: &str,
        post: impl Fn() -> Result<T>,
        find: impl Fn() -> Result<Option<T>>,
    ) -> Result<T> {
        const ROUNDS: u32 = 3;
        const LOOKS: u32 = 3;
        let mut last = None;
        for round in 1..=ROUNDS {
            let error = match post() {
                Ok(created) => return Ok(created),
                Err(e) => e,
            };
            let ambiguous = match &error {
                // 503 out_of_stock is an answer, not an accident: no retry.
                Error::Api(api) => api.status >= 500 && !api.is_capacity(),
                Error::Transport { maybe_applied, .. } => *maybe_applied,
                _ => false,
            };
            if !ambiguous {
                return Err(error);
            }
            self.notify(&format!(
                "creating {what}: {error}; checking whether it was created before trying again"
            ));
            for look in 1..=LOOKS {
                if let Some(found) = find()? {
                    self.notify(&format!("creating {what}: it was created after all; using it"));
                    return Ok(found);
                }
                if look < LOOKS {
                    std::thread::sleep(self.backoff(look));
                }
            }
            if round < ROUNDS {
                std::thread::sleep(self.backoff(round));
            }
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| Error::Refused(format!("creating {what} failed"))))
    }
}

/// Query pairs from `(&str, impl ToString)`.
pub fn query<V: ToString>(pairs: &[(&str, V)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.to_string())).collect()
}
