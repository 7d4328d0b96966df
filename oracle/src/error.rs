//! The oracle's API errors and their one mapping to HTTP status and JSON.

use crate::query::QueryError;
use ledger::service::json_error;
use ledger::store::StoreError;
use warp::http::StatusCode;
use warp::reply::Response;

/// A refused or failed oracle request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input (400) with a code and a message naming the field.
    #[error("{message}")]
    Invalid {
        /// Error code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Postgres is unavailable or failed (503; details are logged, not returned).
    #[error("the ledger database is unavailable")]
    Unavailable(#[from] StoreError),
}

impl ApiError {
    /// A 400 with `code`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The JSON error response.
    pub fn response(&self) -> Response {
        match self {
            ApiError::Invalid { code, message } => {
                json_error(StatusCode::BAD_REQUEST, code, message)
            }
            ApiError::Unavailable(e) => {
                tracing::error!(error = %e, "oracle request failed");
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    &self.to_string(),
                )
            }
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(m) => ApiError::invalid("invalid_query", m),
            QueryError::Store(e) => ApiError::Unavailable(e),
        }
    }
}
