//! Why the proxy could not answer a client's request, and the one conversion to the JSON-RPC
//! error the client gets.
//!
//! Inside the proxy, every failure on the way to an answer is a [`RequestError`]; only the
//! rmcp handlers turn it into an [`ErrorData`], through [`From`]. So each kind of failure has
//! one code and one wording, in both modes. A backend's own JSON-RPC error passes through
//! unchanged. (A stale or foreign list cursor is no error: it gets the end of the list, an
//! empty page.)

use std::time::Duration;

use rmcp::model::{ErrorCode, ErrorData};

/// Why a client's request got no answer of its own.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The backend answered with a JSON-RPC error of its own.
    #[error("{}", .0.message)]
    Backend(ErrorData),
    /// The backend cannot be reached: down, still connecting, waiting for a login.
    #[error("backend '{backend}' is unavailable: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: String,
        /// What is wrong, in plain words.
        reason: String,
    },
    /// The connection attempt failed; its message names the backend and its URL.
    #[error("{0}")]
    NotConnected(String),
    /// No token could be had for the backend.
    #[error("backend '{backend}': authentication failed: {reason}")]
    Unauthenticated {
        /// The backend's name.
        backend: String,
        /// The login problem.
        reason: String,
    },
    /// The backend gave no answer and no progress within its request timeout; the request
    /// was cancelled there.
    #[error(
        "backend '{backend}' did not answer within {} s (its request_timeout; progress \
         notifications extend it); the request was cancelled",
        .timeout.as_secs_f64()
    )]
    TimedOut {
        /// The backend's name.
        backend: String,
        /// Its request timeout.
        timeout: Duration,
    },
    /// No backend has a tool or prompt of this name.
    #[error("unknown {kind}: {name}")]
    UnknownName {
        /// `tool` or `prompt`.
        kind: &'static str,
        /// The name as the client sent it.
        name: String,
    },
    /// No backend serves this resource URI.
    #[error("no backend serves resource {uri}")]
    NoSuchResource {
        /// The URI as the client sent it.
        uri: String,
    },
    /// Arguments of the gateway's own tools that it cannot use; the text says what to send.
    #[error("{0}")]
    InvalidParams(String),
    /// A request before `initialize`.
    #[error("initialize first")]
    NotInitialized,
    /// A second `initialize`.
    #[error("already initialized")]
    AlreadyInitialized,
    /// A method the gateway does not serve.
    #[error("{method} is not supported by the gateway")]
    Unsupported {
        /// The method's name.
        method: String,
    },
    /// A message that could not be translated: a backend's answer of the wrong shape, or a
    /// bug of the proxy's.
    #[error("{0}")]
    Internal(String),
}

impl RequestError {
    /// An [`RequestError::Internal`] from anything printable (a serde error, say).
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<RequestError> for ErrorData {
    fn from(error: RequestError) -> Self {
        let code = match &error {
            RequestError::Backend(passed_on) => return passed_on.clone(),
            RequestError::UnknownName { .. } | RequestError::InvalidParams(_) => {
                ErrorCode::INVALID_PARAMS
            }
            RequestError::NoSuchResource { .. } => ErrorCode::RESOURCE_NOT_FOUND,
            RequestError::NotInitialized | RequestError::AlreadyInitialized => {
                ErrorCode::INVALID_REQUEST
            }
            RequestError::Unsupported { .. } => ErrorCode::METHOD_NOT_FOUND,
            RequestError::Unavailable { .. }
            | RequestError::NotConnected(_)
            | RequestError::Unauthenticated { .. }
            | RequestError::TimedOut { .. }
            | RequestError::Internal(_) => ErrorCode::INTERNAL_ERROR,
        };
        ErrorData::new(code, error.to_string(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_backend_errors_pass_unchanged() {
        let from_backend = ErrorData::new(ErrorCode(-32042), "quota", None);
        let cases = [
            (
                RequestError::Backend(from_backend.clone()),
                from_backend.code,
            ),
            (
                RequestError::UnknownName {
                    kind: "tool",
                    name: "x".into(),
                },
                ErrorCode::INVALID_PARAMS,
            ),
            (
                RequestError::NoSuchResource { uri: "u".into() },
                ErrorCode::RESOURCE_NOT_FOUND,
            ),
            (RequestError::NotInitialized, ErrorCode::INVALID_REQUEST),
            (
                RequestError::Unsupported { method: "m".into() },
                ErrorCode::METHOD_NOT_FOUND,
            ),
            (
                RequestError::TimedOut {
                    backend: "b".into(),
                    timeout: Duration::from_millis(1500),
                },
                ErrorCode::INTERNAL_ERROR,
            ),
        ];
        for (error, code) in cases {
            let text = error.to_string();
            let data = ErrorData::from(error);
            assert_eq!(data.code, code, "{text}");
            assert_eq!(data.message, text);
        }
    }
}
