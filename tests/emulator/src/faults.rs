//! Fault rules (reference §15 "Fault injection") and the call log.
//!
//! A rule matches Scaleway calls by method and path (a glob where `*`
//! matches within one segment and `**` anything, or a prefix) and fires
//! either on the next `times` matching calls or with a `probability`. The
//! first rule that fires decides the fault of a call.

use serde_json::{Value, json};

use crate::errors::Reply;
use crate::util::Rng;

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// 429, empty body, no Content-Type, `X-Envoy-Ratelimited: true`, no Retry-After.
    RateLimit,
    /// 429 with `Retry-After: <seconds>`.
    RateLimitRetryAfter { seconds: u64 },
    /// `500 {"message":"internal error"}`.
    InternalError,
    /// 502/503/504 with an HTML page or an empty text body.
    UpstreamError { status: u16, html: bool },
    /// A permanent JSON 503 `{"message": ...}`.
    Unavailable { message: String },
    /// Wait this many (real) seconds, then answer normally.
    Delay { seconds: f64 },
    /// Close the connection without answering (the call is not performed).
    Drop,
    /// Perform the call, send the headers and half the body, then close.
    ResetMidBody,
    /// 409 transient_state.
    TransientState {
        resource: Option<String>,
        resource_id: Option<String>,
        current_state: Option<String>,
    },
    /// 403 quotas_exceeded.
    QuotasExceeded {
        resource: Option<String>,
        quota: u64,
        current: u64,
    },
    /// 403 permissions_denied (an API key whose IAM policy lacks the product).
    PermissionsDenied {
        resource: Option<String>,
        action: Option<String>,
    },
    /// 503 out_of_stock, or (`accept`) a server create that sits at `out_of_stock`.
    OutOfStock { accept: bool },
    /// The transitions the call schedules never finish.
    Stuck,
    /// The transitions the call schedules end in `error` (`failed` for gateways).
    TransitionError,
    /// The transitions the call schedules end in `locked`.
    TransitionLocked,
    /// Perform the call, then answer an error status (500 by default).
    CommitThenError { status: u16 },
    /// Perform the call, then close the connection without answering.
    CommitThenDrop,
    /// The resource created by the call is invisible to the next `reads`
    /// reads (GET answers its not-found shape, lists omit it).
    EventualConsistency { reads: u32 },
    /// A FIP create reuses the most recently deleted FIP (id, address, created_at).
    RecycleFip,
    /// Lists report `total_count` off by `delta`.
    TotalCountDelta { delta: i64 },
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::RateLimit => "rate_limit",
            Kind::RateLimitRetryAfter { .. } => "rate_limit_retry_after",
            Kind::InternalError => "internal_error",
            Kind::UpstreamError { .. } => "upstream_error",
            Kind::Unavailable { .. } => "unavailable",
            Kind::Delay { .. } => "delay",
            Kind::Drop => "drop",
            Kind::ResetMidBody => "reset_mid_body",
            Kind::TransientState { .. } => "transient_state",
            Kind::QuotasExceeded { .. } => "quotas_exceeded",
            Kind::PermissionsDenied { .. } => "permissions_denied",
            Kind::OutOfStock { .. } => "out_of_stock",
            Kind::Stuck => "stuck",
            Kind::TransitionError => "transition_error",
            Kind::TransitionLocked => "transition_locked",
            Kind::CommitThenError { .. } => "commit_then_error",
            Kind::CommitThenDrop => "commit_then_drop",
            Kind::EventualConsistency { .. } => "eventual_consistency",
            Kind::RecycleFip => "recycle_fip",
            Kind::TotalCountDelta { .. } => "total_count_delta",
        }
    }

    fn params(&self) -> Value {
        match self {
            Kind::RateLimitRetryAfter { seconds } => json!({ "retry_after": seconds }),
            Kind::UpstreamError { status, html } => {
                json!({"status": status, "body": if *html { "html" } else { "empty" }})
            }
            Kind::Unavailable { message } => json!({ "message": message }),
            Kind::Delay { seconds } => json!({ "seconds": seconds }),
            Kind::TransientState {
                resource,
                resource_id,
                current_state,
            } => {
                json!({"resource": resource, "resource_id": resource_id, "current_state": current_state})
            }
            Kind::QuotasExceeded {
                resource,
                quota,
                current,
            } => {
                json!({"resource": resource, "quota": quota, "current": current})
            }
            Kind::PermissionsDenied { resource, action } => json!({"resource": resource, "action": action}),
            Kind::OutOfStock { accept } => json!({ "accept": accept }),
            Kind::CommitThenError { status } => json!({ "status": status }),
            Kind::EventualConsistency { reads } => json!({ "reads": reads }),
            Kind::TotalCountDelta { delta } => json!({ "delta": delta }),
            _ => json!({}),
        }
    }
}

/// Every kind name, for the error message of an unknown one.
pub const KIND_NAMES: [&str; 20] = [
    "rate_limit",
    "rate_limit_retry_after",
    "internal_error",
    "upstream_error",
    "unavailable",
    "delay",
    "drop",
    "reset_mid_body",
    "transient_state",
    "quotas_exceeded",
    "permissions_denied",
    "out_of_stock",
    "stuck",
    "transition_error",
    "transition_locked",
    "commit_then_error",
    "commit_then_drop",
    "eventual_consistency",
    "recycle_fip",
    "total_count_delta",
];

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub kind: Kind,
    pub method: Option<String>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    /// Calls left to fault (`None`: unlimited, use `probability`).
    pub remaining: Option<u64>,
    pub probability: f64,
    pub hits: u64,
}

fn bad(msg: &str) -> Reply {
    crate::errors::invalid("fault", "constraint", msg)
}

impl Rule {
    /// Parses a rule from the control API body.
    pub fn parse(v: &Value, id: String) -> Result<Rule, Reply> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let num = |k: &str| v.get(k).and_then(Value::as_f64);
        let kind_name = text("kind").ok_or_else(|| bad("\"kind\" is required"))?;
        let kind = match kind_name.as_str() {
            "rate_limit" => Kind::RateLimit,
            "rate_limit_retry_after" => Kind::RateLimitRetryAfter {
                seconds: num("retry_after").map_or(1, |s| s.max(0.0) as u64),
            },
            "internal_error" => Kind::InternalError,
            "upstream_error" => {
                let status = num("status").map_or(502, |s| s as u16);
                if !(500..=599).contains(&status) {
                    return Err(bad("upstream_error needs a 5xx status"));
                }
                let html = match text("body").as_deref() {
                    None | Some("html") => true,
                    Some("empty") => false,
                    Some(_) => return Err(bad("body must be \"html\" or \"empty\"")),
                };
                Kind::UpstreamError { status, html }
            }
            "unavailable" => Kind::Unavailable {
                message: text("message").unwrap_or_else(|| "service unavailable".into()),
            },
            "delay" => Kind::Delay {
                seconds: num("seconds").unwrap_or(3.0).clamp(0.0, 3600.0),
            },
            "drop" => Kind::Drop,
            "reset_mid_body" => Kind::ResetMidBody,
            "transient_state" => Kind::TransientState {
                resource: text("resource"),
                resource_id: text("resource_id"),
                current_state: text("current_state"),
            },
            "quotas_exceeded" => Kind::QuotasExceeded {
                resource: text("resource"),
                quota: num("quota").map_or(1, |q| q.max(0.0) as u64),
                current: num("current").map_or(1, |q| q.max(0.0) as u64),
            },
            "permissions_denied" => Kind::PermissionsDenied {
                resource: text("resource"),
                action: text("action"),
            },
            "out_of_stock" => Kind::OutOfStock {
                accept: v.get("accept").and_then(Value::as_bool).unwrap_or(false),
            },
            "stuck" => Kind::Stuck,
            "transition_error" => Kind::TransitionError,
            "transition_locked" => Kind::TransitionLocked,
            "commit_then_error" => Kind::CommitThenError {
                status: num("status").map_or(500, |s| s as u16),
            },
            "commit_then_drop" => Kind::CommitThenDrop,
            "eventual_consistency" => Kind::EventualConsistency {
                reads: num("reads").map_or(2, |r| r.max(1.0) as u32),
            },
            "recycle_fip" => Kind::RecycleFip,
            "total_count_delta" => Kind::TotalCountDelta {
                delta: num("delta").map_or(1, |d| d as i64),
            },
            other => {
                return Err(bad(&format!(
                    "unknown kind {other:?}; known: {}",
                    KIND_NAMES.join(", ")
                )));
            }
        };
        let method = text("method").map(|m| m.to_ascii_uppercase());
        let path = text("path");
        let path_prefix = text("path_prefix");
        for p in [&path, &path_prefix].into_iter().flatten() {
            if !p.starts_with('/') {
                return Err(bad("path and path_prefix must start with /"));
            }
        }
        let times = v.get("times").and_then(Value::as_u64);
        let probability = num("probability");
        if let Some(p) = probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(bad("probability must be between 0 and 1"));
        }
        let remaining = match (times, probability) {
            (None, None) => Some(1),
            (t, _) => t,
        };
        Ok(Rule {
            id,
            kind,
            method,
            path,
            path_prefix,
            remaining,
            probability: probability.unwrap_or(1.0),
            hits: 0,
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind.name(),
            "method": self.method,
            "path": self.path,
            "path_prefix": self.path_prefix,
            "remaining": self.remaining,
            "probability": self.probability,
            "hits": self.hits,
            "params": self.kind.params(),
        })
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self.path.as_ref().is_none_or(|p| glob(p, path))
            && self.path_prefix.as_ref().is_none_or(|p| path.starts_with(p.as_str()))
    }
}

/// `*` matches any run of characters but `/`; `**` matches anything.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => (0..=t.len()).any(|i| go(&p[2..], &t[i..])),
            Some(b'*') => {
                let mut i = 0;
                loop {
                    if go(&p[1..], &t[i..]) {
                        return true;
                    }
                    if i >= t.len() || t[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The first rule that fires on this call, if any (its counters updated).
pub fn pick(rules: &mut [Rule], rng: &mut Rng, method: &str, path: &str) -> Option<Kind> {
    for rule in rules.iter_mut() {
        if !rule.matches(method, path) || rule.remaining == Some(0) {
            continue;
        }
        if rule.probability < 1.0 && rng.unit() >= rule.probability {
            continue;
        }
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        rule.hits += 1;
        return Some(rule.kind.clone());
    }
    None
}

/// One Scaleway call, as `GET /_emulator/calls` lists it.
#[derive(Debug, Clone)]
pub struct Call {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    /// `None` when no answer was sent (dropped connection).
    pub status: Option<u16>,
    pub fault: Option<&'static str>,
    pub at: f64,
    pub request_id: String,
}

impl Call {
    pub fn json(&self) -> Value {
        json!({
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "fault": self.fault,
            "at": self.at,
            "request_id": self.request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(
            "/flexible-ip/v1alpha1/zones/*/fips",
            "/flexible-ip/v1alpha1/zones/fr-par-1/fips"
        ));
        assert!(!glob(
            "/flexible-ip/v1alpha1/zones/*/fips",
            "/flexible-ip/v1alpha1/zones/fr-par-1/fips/x"
        ));
        assert!(glob("/flexible-ip/**", "/flexible-ip/v1alpha1/zones/fr-par-1/fips/x"));
        assert!(glob("/a/*/c/*", "/a/b/c/d"));
        assert!(!glob("/a/*", "/a/b/c"));
        assert!(glob("**", "/anything"));
    }

    #[test]
    fn rules_count_down() {
        let mut rules = vec![
            Rule::parse(&json!({"kind": "rate_limit", "method": "get", "times": 2}), "r1".into()).unwrap_or_else(
                |_| Rule {
                    id: String::new(),
                    kind: Kind::Drop,
                    method: None,
                    path: None,
                    path_prefix: None,
                    remaining: Some(0),
                    probability: 1.0,
                    hits: 0,
                },
            ),
        ];
        let mut rng = Rng::new(Some(3));
        assert_eq!(pick(&mut rules, &mut rng, "POST", "/x"), None);
        assert_eq!(pick(&mut rules, &mut rng, "GET", "/x"), Some(Kind::RateLimit));
        assert_eq!(pick(&mut rules, &mut rng, "GET", "/x"), Some(Kind::RateLimit));
        assert_eq!(pick(&mut rules, &mut rng, "GET", "/x"), None);
        assert_eq!(rules[0].hits, 2);
    }

    #[test]
    fn parse_errors() {
        assert!(Rule::parse(&json!({}), "x".into()).is_err());
        assert!(Rule::parse(&json!({"kind": "nope"}), "x".into()).is_err());
        assert!(Rule::parse(&json!({"kind": "drop", "probability": 2.0}), "x".into()).is_err());
        assert!(Rule::parse(&json!({"kind": "drop", "path": "nope"}), "x".into()).is_err());
        let r = Rule::parse(&json!({"kind": "drop", "probability": 0.5}), "x".into());
        assert_eq!(r.map(|r| r.remaining).ok(), Some(None));
    }
}
