use super::*;

fn parse(status: u16, body: &str) -> ApiError {
    ApiError::from_response("GET", "/x", status, body.as_bytes(), Some("rid".into()), None)
}

/// Every error shape of the reference and the recordings.
#[test]
fn error_shapes() {
    let cases: Vec<(u16, &str, ApiErrorKind, &str)> = vec![
        (
            403,
            r#"{"details":[{"action":"read","resource":"flexible-ip"}],"message":"insufficient permissions","type":"permissions_denied"}"#,
            ApiErrorKind::PermissionsDenied {
                details: vec![PermissionDetail {
                    resource: "flexible-ip".into(),
                    action: "read".into(),
                }],
            },
            "answered 403 permissions_denied: insufficient permissions; check the API key's IAM policy",
        ),
        (
            404,
            r#"{"message":"Not Found"}"#,
            ApiErrorKind::Other { error_type: None },
            "answered 404: Not Found (request id rid)",
        ),
        (
            429,
            "",
            ApiErrorKind::TooManyRequests,
            "answered 429 too_many_requests; Scaleway is rate-limiting",
        ),
        (
            400,
            r#"{"details":[{"argument_name":"server_id","reason":"constraint","help_message":"must be in the same zone"}],"message":"invalid argument(s)","type":"invalid_arguments"}"#,
            ApiErrorKind::InvalidArguments {
                details: vec![ArgumentDetail {
                    argument_name: "server_id".into(),
                    reason: "constraint".into(),
                    help_message: "must be in the same zone".into(),
                }],
            },
            "[server_id (constraint): must be in the same zone]",
        ),
        (
            401,
            r#"{"type":"denied_authentication","method":"api_key","reason":"not_found","message":"authentication is denied"}"#,
            ApiErrorKind::DeniedAuthentication {
                method: "api_key".into(),
                reason: "not_found".into(),
            },
            "authentication is denied; check the secret key",
        ),
        (
            409,
            r#"{"current_state":"configuring","message":"resource is in a transient state","resource":"gateway","resource_id":"gw1","type":"transient_state"}"#,
            ApiErrorKind::TransientState {
                resource: "gateway".into(),
                resource_id: "gw1".into(),
                current_state: "configuring".into(),
            },
            "(gateway gw1 is configuring)",
        ),
        (
            403,
            r#"{"details":[{"resource":"baremetal_servers","quota":2,"current":2}],"message":"quota(s) exceeded for this resource","type":"quotas_exceeded"}"#,
            ApiErrorKind::QuotasExceeded {
                details: vec![QuotaDetail {
                    resource: "baremetal_servers".into(),
                    quota: 2,
                    current: 2,
                }],
            },
            "raise the quota in the Scaleway console (baremetal_servers: 2 of 2)",
        ),
        (
            404,
            r#"{"message":"resource is not found","resource":"ssh_key","resource_id":"k1","type":"not_found"}"#,
            ApiErrorKind::NotFound {
                resource: "ssh_key".into(),
                resource_id: "k1".into(),
            },
            "not_found: resource is not found (ssh_key k1)",
        ),
        (
            412,
            r#"{"message":"precondition is not respected","precondition":"resource_still_in_use","type":"precondition_failed"}"#,
            ApiErrorKind::PreconditionFailed {
                precondition: "resource_still_in_use".into(),
                help_message: String::new(),
            },
            "(resource_still_in_use)",
        ),
        (
            503,
            r#"{"message":"cloud-init is not supported on this offer"}"#,
            ApiErrorKind::Other { error_type: None },
            "answered 503: cloud-init is not supported on this offer",
        ),
        (
            502,
            "<html><body>Bad Gateway</body></html>",
            ApiErrorKind::Other { error_type: None },
            "answered 502: <html>",
        ),
        (
            503,
            r#"{"type":"out_of_stock","resource":"EM-A115X-SSD","message":"out of stock"}"#,
            ApiErrorKind::OutOfStock {
                resource: "EM-A115X-SSD".into(),
            },
            "EM-A115X-SSD is out of stock",
        ),
        (
            409,
            r#"{"type":"brand_new_type","message":"m"}"#,
            ApiErrorKind::Other {
                error_type: Some("brand_new_type".into()),
            },
            "answered 409 brand_new_type: m",
        ),
    ];
    for (status, body, kind, shown) in cases {
        let e = parse(status, body);
        assert_eq!(e.kind, kind, "{body}");
        assert!(e.to_string().contains(shown), "{body}: {e}");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn classification() {
    let gone = parse(
        403,
        r#"{"details":[{"action":"read","resource":"flexible-ip"}],"message":"insufficient permissions","type":"permissions_denied"}"#,
    );
    assert!(gone.is_fip_permissions_denied());
    let other = parse(
        403,
        r#"{"details":[{"action":"write","resource":"baremetal"}],"type":"permissions_denied","message":"m"}"#,
    );
    assert!(!other.is_fip_permissions_denied());
    assert!(parse(404, r#"{"message":"Not Found"}"#).is_not_found());
    assert!(parse(429, "").is_retryable());
    assert!(parse(502, "").is_retryable());
    assert!(!parse(501, "").is_retryable());
    assert!(!parse(400, "{}").is_retryable());
}
