//! Errors of the Scaleway client.
//!
//! An HTTP error answer becomes an [`ApiError`]: the status (authoritative),
//! the standard body's `type` turned into an [`ApiErrorKind`] with its
//! fields, the `message`, and the `X-Request-Id`. The irregular shapes seen
//! on the real API are kept: a bare `{"message":"Not Found"}` (Elastic Metal
//! 404), an empty 429, non-JSON 5xx bodies.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// One `invalid_arguments` detail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
pub struct ArgumentDetail {
    pub argument_name: String,
    pub reason: String,
    pub help_message: String,
}

/// One `permissions_denied` detail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
pub struct PermissionDetail {
    pub resource: String,
    pub action: String,
}

/// One `quotas_exceeded` detail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
pub struct QuotaDetail {
    pub resource: String,
    pub quota: u64,
    pub current: u64,
}

/// What kind of error the API answered, from the body's `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorKind {
    InvalidArguments {
        details: Vec<ArgumentDetail>,
    },
    DeniedAuthentication {
        method: String,
        reason: String,
    },
    PermissionsDenied {
        details: Vec<PermissionDetail>,
    },
    QuotasExceeded {
        details: Vec<QuotaDetail>,
    },
    NotFound {
        resource: String,
        resource_id: String,
    },
    TransientState {
        resource: String,
        resource_id: String,
        current_state: String,
    },
    AlreadyExists {
        resource: String,
        resource_id: String,
    },
    PreconditionFailed {
        precondition: String,
        help_message: String,
    },
    ResourceExpired {
        resource: String,
        resource_id: String,
    },
    Locked {
        resource: String,
        resource_id: String,
    },
    TooManyRequests,
    OutOfStock {
        resource: String,
    },
    /// A body without a known `type` (or no JSON body at all): go by the status.
    Other {
        error_type: Option<String>,
    },
}

/// An error answer from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub method: String,
    /// The request path (never holds a secret).
    pub path: String,
    pub status: u16,
    pub kind: ApiErrorKind,
    pub message: String,
    pub request_id: Option<String>,
    /// `Retry-After`, when the answer had one.
    pub retry_after: Option<Duration>,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn details<T: for<'de> Deserialize<'de>>(v: &Value) -> Vec<T> {
    v.get("details")
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default()
}

impl ApiError {
    /// Builds the error from an answer's status, body and headers.
    pub fn from_response(
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
        request_id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok().filter(Value::is_object);
        let v = json.unwrap_or(Value::Null);
        let error_type = v.get("type").and_then(Value::as_str).map(str::to_owned);
        let kind = match error_type.as_deref() {
            Some("invalid_arguments") => ApiErrorKind::InvalidArguments { details: details(&v) },
            Some("denied_authentication") => ApiErrorKind::DeniedAuthentication {
                method: text(&v, "method"),
                reason: text(&v, "reason"),
            },
            Some("permissions_denied") => ApiErrorKind::PermissionsDenied { details: details(&v) },
            Some("quotas_exceeded") => ApiErrorKind::QuotasExceeded { details: details(&v) },
            Some("not_found") => ApiErrorKind::NotFound {
                resource: text(&v, "resource"),
                resource_id: text(&v, "resource_id"),
            },
            Some("transient_state") => ApiErrorKind::TransientState {
                resource: text(&v, "resource"),
                resource_id: text(&v, "resource_id"),
                current_state: text(&v, "current_state"),
            },
            Some("already_exists") => ApiErrorKind::AlreadyExists {
                resource: text(&v, "resource"),
                resource_id: text(&v, "resource_id"),
            },
            Some("precondition_failed") => ApiErrorKind::PreconditionFailed {
                precondition: text(&v, "precondition"),
                help_message: text(&v, "help_message"),
            },
            Some("resource_expired" | "expired") => ApiErrorKind::ResourceExpired {
                resource: text(&v, "resource"),
                resource_id: text(&v, "resource_id"),
            },
            Some("locked") => ApiErrorKind::Locked {
                resource: text(&v, "resource"),
                resource_id: text(&v, "resource_id"),
            },
            Some("too_many_requests") => ApiErrorKind::TooManyRequests,
            Some("out_of_stock") => ApiErrorKind::OutOfStock {
                resource: text(&v, "resource"),
            },
            _ if status == 429 => ApiErrorKind::TooManyRequests,
            other => ApiErrorKind::Other {
                error_type: other.map(str::to_owned),
            },
        };
        let mut message = text(&v, "message");
        if message.is_empty() && !body.is_empty() && v.is_null() {
            // A non-JSON body (an HTML error page): keep a short, printable hint.
            let raw = String::from_utf8_lossy(body);
            message = raw
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect::<String>()
                .trim()
                .to_owned();
        }
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            kind,
            message,
            request_id,
            retry_after,
        }
    }

    /// The resource does not exist (any 404 shape).
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    /// The 403 the flexible IP API answers for a deleted (or unknown) IP.
    /// It is also what a real permission problem looks like, so callers
    /// confirm with a list before treating the IP as gone.
    pub fn is_fip_permissions_denied(&self) -> bool {
        self.status == 403
            && matches!(&self.kind, ApiErrorKind::PermissionsDenied { details }
                if details.is_empty() || details.iter().any(|d| d.resource == "flexible-ip"))
    }

    /// Worth retrying as a transport problem: 429 and 5xx except 501.
    pub fn is_retryable(&self) -> bool {
        self.status == 429 || (self.status >= 500 && self.status != 501)
    }

    /// A capacity error that retrying soon will not fix.
    pub fn is_capacity(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::QuotasExceeded { .. } | ApiErrorKind::OutOfStock { .. }
        )
    }

    fn type_name(&self) -> &str {
        match &self.kind {
            ApiErrorKind::InvalidArguments { .. } => "invalid_arguments",
            ApiErrorKind::DeniedAuthentication { .. } => "denied_authentication",
            ApiErrorKind::PermissionsDenied { .. } => "permissions_denied",
            ApiErrorKind::QuotasExceeded { .. } => "quotas_exceeded",
            ApiErrorKind::NotFound { .. } => "not_found",
            ApiErrorKind::TransientState { .. } => "transient_state",
            ApiErrorKind::AlreadyExists { .. } => "already_exists",
            ApiErrorKind::PreconditionFailed { .. } => "precondition_failed",
            ApiErrorKind::ResourceExpired { .. } => "resource_expired",
            ApiErrorKind::Locked { .. } => "locked",
            ApiErrorKind::TooManyRequests => "too_many_requests",
            ApiErrorKind::OutOfStock { .. } => "out_of_stock",
            ApiErrorKind::Other { error_type } => error_type.as_deref().unwrap_or(""),
        }
    }

    /// What to do about it, when there is something to say.
    fn advice(&self) -> Option<String> {
        Some(match &self.kind {
            ApiErrorKind::DeniedAuthentication { .. } => {
                "check the secret key (SCW_SECRET_KEY or the config file profile)".to_owned()
            }
            ApiErrorKind::PermissionsDenied { .. } => {
                "check the API key's IAM policy covers this project and product".to_owned()
            }
            ApiErrorKind::QuotasExceeded { details } => format!(
                "raise the quota in the Scaleway console{}",
                details
                    .first()
                    .map(|d| format!(" ({}: {} of {})", d.resource, d.current, d.quota))
                    .unwrap_or_default()
            ),
            ApiErrorKind::OutOfStock { resource } => {
                format!("{resource} is out of stock in this zone: choose another offer or zone, or retry later")
            }
            ApiErrorKind::TooManyRequests => "Scaleway is rate-limiting this API key; retry later".to_owned(),
            _ => return None,
        })
    }
}

/// An error as one line: control characters from the answer's body (its
/// message, resource names...) are escaped, so a log line stays one line.
impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = RawApiError(self).to_string();
        for c in raw.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

struct RawApiError<'a>(&'a ApiError);

impl fmt::Display for RawApiError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Scaleway API {} {} answered {}",
            self.0.method, self.0.path, self.0.status
        )?;
        let type_name = self.0.type_name();
        if !type_name.is_empty() {
            write!(f, " {type_name}")?;
        }
        if !self.0.message.is_empty() {
            write!(f, ": {}", self.0.message)?;
        }
        match &self.0.kind {
            ApiErrorKind::InvalidArguments { details } if !details.is_empty() => {
                let args: Vec<String> = details
                    .iter()
                    .map(|d| {
                        let mut s = format!("{} ({})", d.argument_name, d.reason);
                        if !d.help_message.is_empty() {
                            s.push_str(&format!(": {}", d.help_message));
                        }
                        s
                    })
                    .collect();
                write!(f, " [{}]", args.join("; "))?;
            }
            ApiErrorKind::NotFound { resource, resource_id } if !resource.is_empty() => {
                write!(f, " ({resource} {resource_id})")?;
            }
            ApiErrorKind::TransientState {
                resource,
                resource_id,
                current_state,
            } => {
                write!(f, " ({resource} {resource_id} is {current_state})")?;
            }
            ApiErrorKind::PreconditionFailed {
                precondition,
                help_message,
            } => {
                write!(
                    f,
                    " ({precondition}{})",
                    if help_message.is_empty() {
                        String::new()
                    } else {
                        format!(": {help_message}")
                    }
                )?;
            }
            _ => {}
        }
        if let Some(advice) = self.0.advice() {
            write!(f, "; {advice}")?;
        }
        if let Some(id) = &self.0.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Everything the client can fail with. No variant ever holds the secret key.
#[derive(Debug)]
pub enum Error {
    /// Credentials or settings could not be resolved.
    Config(crate::config::ConfigError),
    /// The API answered with an error.
    Api(Box<ApiError>),
    /// No answer: connection refused or reset, timeout. `maybe_applied` is
    /// true when the request may have reached the API (it was sent).
    Transport {
        method: String,
        path: String,
        reason: String,
        maybe_applied: bool,
    },
    /// The answer could not be read as the expected JSON.
    Decode {
        method: String,
        path: String,
        reason: String,
    },
    /// A waiter gave up: the resource stayed in `state`.
    WaitTimeout {
        resource: String,
        id: String,
        state: String,
        waited: Duration,
    },
    /// A waiter saw a terminal state other than the one wanted.
    WaitFailed {
        resource: String,
        id: String,
        state: String,
        wanted: String,
    },
    /// The client refuses to go on (for example: an ambiguous create it cannot reconcile).
    Refused(String),
}

impl Error {
    /// The API error, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e.as_ref()),
            _ => None,
        }
    }

    /// The resource does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(ApiError::is_not_found)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::Api(e) => write!(f, "{e}"),
            Self::Transport {
                method,
                path,
                reason,
                maybe_applied,
            } => {
                write!(f, "Scaleway API {method} {path}: no answer ({reason})")?;
                if *maybe_applied {
                    write!(f, "; the request may have been applied")?;
                }
                Ok(())
            }
            Self::Decode { method, path, reason } => {
                write!(f, "Scaleway API {method} {path}: unexpected answer: {reason}")
            }
            Self::WaitTimeout {
                resource,
                id,
                state,
                waited,
            } => write!(
                f,
                "gave up waiting for Scaleway {resource} {id}: still {state} after {}s",
                waited.as_secs()
            ),
            Self::WaitFailed {
                resource,
                id,
                state,
                wanted,
            } => {
                write!(f, "Scaleway {resource} {id} ended {state} instead of {wanted}")
            }
            Self::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Self::Api(Box::new(e))
    }
}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Self::Config(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
