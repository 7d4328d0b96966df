//! The one error vocabulary of every service's API (portal, guardian, oracle) and its one
//! mapping to HTTP statuses and JSON error bodies `{"error": {"code", "message"}}`: the same
//! failure has the same status and code whichever service answers.

use crate::gate::GateError;
use crate::receipt::ReceiptError;
use crate::service::json_error;
use crate::store::StoreError;
use warp::http::StatusCode;

/// Every way an API request can fail, each with exactly one status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input (400).
    #[error("{message}")]
    BadRequest {
        /// Stable error code.
        code: &'static str,
        /// Explanation naming the field at fault.
        message: String,
    },
    /// Missing or invalid API key (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid key, wrong role or scroll (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such scroll, receipt, checkpoint or anchor (404).
    #[error("{message}")]
    NotFound {
        /// Stable error code.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// Idempotency key reused with another body, or the resource exists (409).
    #[error("{message}")]
    Conflict {
        /// Stable error code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A body without Content-Length (411).
    #[error("a Content-Length header is required")]
    LengthRequired,
    /// Body over the limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A body of the wrong media type (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body did not arrive in time (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// The request is well-formed but a rule refuses it (422), e.g. the constitution.
    #[error("{message}")]
    Unprocessable {
        /// Stable error code.
        code: &'static str,
        /// Explanation naming the rule and field.
        message: String,
    },
    /// The constitution refuses the request (422 `constitutional_violation`); the body names
    /// the rule and the field besides the message.
    #[error("{message}")]
    Violation {
        /// The rule broken, e.g. `drills.types`.
        rule: String,
        /// The field at fault, e.g. `receipts[2].payload.drill_id`.
        field: String,
        /// Explanation.
        message: String,
    },
    /// A stored row failed its integrity check (500): never served as good.
    #[error("{0}")]
    Integrity(String),
    /// Postgres unreachable or failing (503). The message is for logs; clients get a
    /// generic one (no SQL text, no connection details).
    #[error("{0}")]
    Unavailable(String),
    /// The service refuses this request for now, with Retry-After: 503 for the emergency
    /// freeze, 429 for a key over its rate.
    #[error("{message}")]
    Suspended {
        /// 429 or 503.
        status: StatusCode,
        /// Stable error code.
        code: &'static str,
        /// Explanation.
        message: String,
        /// Seconds before trying again.
        retry_after_secs: u64,
    },
}

impl ApiError {
    /// A 400 with `code` and `message`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A 404 with `code` and `message`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unprocessable { .. } | ApiError::Violation { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Integrity(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Suspended { status, .. } => *status,
        }
    }

    /// The stable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Suspended { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::LengthRequired => "length_required",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Violation { .. } => "constitutional_violation",
            ApiError::Integrity(_) => "integrity_error",
            ApiError::Unavailable(_) => "database_unavailable",
        }
    }

    /// A 403 with the stable code `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(message.into())
    }

    /// The JSON error response. Database failures are logged here and answered with a
    /// generic message, so no SQL text or connection detail reaches a client.
    pub fn response(&self) -> warp::reply::Response {
        match self {
            ApiError::Unavailable(detail) => {
                const MESSAGE: &str = "request failed: database unavailable";
                if let Some(suppressed) = crate::telemetry::REPEATED_LOGS.admit(MESSAGE, "api") {
                    tracing::warn!(detail = %detail, suppressed, "request failed: database unavailable");
                }
                json_error(
                    self.status(),
                    self.code(),
                    "the ledger database is unavailable; try again shortly",
                )
            }
            ApiError::Suspended {
                retry_after_secs, ..
            } => {
                let mut r = json_error(self.status(), self.code(), &self.to_string());
                r.headers_mut().insert(
                    warp::http::header::RETRY_AFTER,
                    warp::http::HeaderValue::from(*retry_after_secs),
                );
                r
            }
            ApiError::Violation {
                rule,
                field,
                message,
            } => {
                let body = serde_json::json!({"error": {
                    "code": self.code(),
                    "message": format!("rule {rule}: {field}: {message}"),
                    "rule": rule,
                    "field": field,
                }});
                let mut r = warp::reply::Response::new(body.to_string().into());
                *r.status_mut() = self.status();
                r.headers_mut().insert(
                    warp::http::header::CONTENT_TYPE,
                    warp::http::HeaderValue::from_static("application/json"),
                );
                r
            }
            ApiError::Unauthorized(_) => {
                let mut r = json_error(self.status(), self.code(), &self.to_string());
                r.headers_mut().insert(
                    warp::http::header::WWW_AUTHENTICATE,
                    warp::http::HeaderValue::from_static("Bearer"),
                );
                r
            }
            _ => json_error(self.status(), self.code(), &self.to_string()),
        }
    }
}

impl From<GateError> for ApiError {
    fn from(e: GateError) -> Self {
        match e {
            GateError::Forbidden { message, .. } => ApiError::Forbidden(message),
            GateError::Invalid { code, message } => ApiError::BadRequest { code, message },
            GateError::Violation {
                rule,
                field,
                message,
            } => ApiError::Violation {
                rule,
                field,
                message,
            },
            GateError::Unavailable { message } => ApiError::Unavailable(message),
            GateError::Frozen {
                message,
                retry_after_secs,
            } => ApiError::Suspended {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "emergency_active",
                message,
                retry_after_secs,
            },
        }
    }
}

impl From<crate::body::BodyError> for ApiError {
    fn from(e: crate::body::BodyError) -> Self {
        use crate::body::BodyError;
        match e {
            BodyError::LengthRequired => ApiError::LengthRequired,
            BodyError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            BodyError::NotJson(_) => ApiError::UnsupportedMediaType(e.to_string()),
            BodyError::TooSlow(_) => ApiError::RequestTimeout(e.to_string()),
            BodyError::Unreadable => ApiError::bad("unreadable_body", e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownScroll(s) => {
                ApiError::not_found("unknown_scroll", format!("no scroll named {s:?}"))
            }
            StoreError::ScrollExists(s) => ApiError::Conflict {
                code: "scroll_exists",
                message: format!("scroll {s:?} already exists"),
            },
            StoreError::IdempotencyConflict(k) => ApiError::Conflict {
                code: "idempotency_conflict",
                message: format!(
                    "Idempotency-Key {k:?} was already used with a different request body"
                ),
            },
            StoreError::BeyondTree {
                requested,
                available,
            } => ApiError::bad(
                "beyond_tree",
                format!("size {requested} is beyond the available tree size {available}"),
            ),
            StoreError::Canonical(c) => ApiError::bad("invalid_number", c.to_string()),
            StoreError::Integrity(m) => ApiError::Integrity(m),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<ReceiptError> for ApiError {
    fn from(e: ReceiptError) -> Self {
        let code = match &e {
            ReceiptError::BadScrollName(_) => "invalid_scroll_name",
            ReceiptError::BadType => "invalid_type",
            ReceiptError::PayloadNotObject => "invalid_payload",
            ReceiptError::PayloadTooLarge(_) => "payload_too_large",
            ReceiptError::Number(_) => "invalid_number",
        };
        ApiError::bad(code, e.to_string())
    }
}
