//! Replies and the Scaleway error shapes (reference §2).

use serde_json::{Value, json};

/// What an API handler answers: a status and a JSON body (`None` for an
/// empty body, as on 204).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
}

/// Handlers return `Ok` or `Err` replies alike; `Err` lets `?` short-circuit.
pub type ApiResult = Result<Reply, Reply>;

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply {
            status: 200,
            body: Some(body),
        }
    }

    pub fn no_content() -> Self {
        Reply {
            status: 204,
            body: None,
        }
    }

    pub fn with_status(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
        }
    }
}

/// `400 invalid_arguments` with one detail.
pub fn invalid(argument: &str, reason: &str, help: &str) -> Reply {
    Reply::with_status(
        400,
        json!({
            "details": [{"argument_name": argument, "reason": reason, "help_message": help}],
            "message": "invalid argument(s)",
            "type": "invalid_arguments",
        }),
    )
}

/// `404 not_found` (VPC, PN, gateways, IPAM, IAM...).
pub fn not_found(resource: &str, id: &str) -> Reply {
    Reply::with_status(
        404,
        json!({"message": "resource is not found", "resource": resource, "resource_id": id, "type": "not_found"}),
    )
}

/// The Elastic Metal v1 404: `{"message":"Not Found"}` with no `type`.
pub fn em_not_found() -> Reply {
    Reply::with_status(404, json!({"message": "Not Found"}))
}

/// The 403 the flexible IP API gives for a deleted or unknown FIP.
pub fn fip_denied(action: &str) -> Reply {
    permissions_denied("flexible-ip", action)
}

/// `403 permissions_denied` (as recorded for FIPs; the same shape for any product).
pub fn permissions_denied(resource: &str, action: &str) -> Reply {
    Reply::with_status(
        403,
        json!({
            "details": [{"action": action, "resource": resource}],
            "message": "insufficient permissions",
            "type": "permissions_denied",
        }),
    )
}

/// `409 transient_state`.
pub fn transient(resource: &str, id: &str, state: &str) -> Reply {
    Reply::with_status(
        409,
        json!({
            "current_state": state,
            "message": "resource is in a transient state",
            "resource": resource,
            "resource_id": id,
            "type": "transient_state",
        }),
    )
}

/// `409 already_exists`.
pub fn already_exists(resource: &str, id: &str, help: &str) -> Reply {
    Reply::with_status(
        409,
        json!({
            "help_message": help,
            "message": "resource already exists",
            "resource": resource,
            "resource_id": id,
            "type": "already_exists",
        }),
    )
}

/// `412 precondition_failed`.
pub fn precondition(precondition: &str, help: &str) -> Reply {
    Reply::with_status(
        412,
        json!({
            "help_message": help,
            "message": "precondition is not respected",
            "precondition": precondition,
            "type": "precondition_failed",
        }),
    )
}

/// `403 quotas_exceeded`.
pub fn quotas_exceeded(resource: &str, quota: u64, current: u64, project_id: Option<&str>) -> Reply {
    let mut detail = json!({"resource": resource, "quota": quota, "current": current});
    if let (Some(p), Some(obj)) = (project_id, detail.as_object_mut()) {
        obj.insert("project_id".into(), json!(p));
    }
    Reply::with_status(
        403,
        json!({"details": [detail], "message": "quota(s) exceeded for this resource", "type": "quotas_exceeded"}),
    )
}

/// `503 out_of_stock`.
pub fn out_of_stock(resource: &str) -> Reply {
    Reply::with_status(
        503,
        json!({"message": "resource is out of stock", "resource": resource, "type": "out_of_stock"}),
    )
}

/// A bare `{"message": ...}` body.
pub fn bare(status: u16, message: &str) -> Reply {
    Reply::with_status(status, json!({ "message": message }))
}

/// The exact 401 body of reference §15, byte for byte.
pub const DENIED_AUTHENTICATION: &str = "{\"type\":\"denied_authentication\",\"method\":\"api_key\",\"reason\":\"not_found\",\"message\":\"authentication is denied\"}";
