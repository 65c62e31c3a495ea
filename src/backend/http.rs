//! The HTTP layer under rmcp's Streamable HTTP client: a fresh bearer token on every request,
//! static headers, one renewal-and-retry when the backend answers 401, and one step-up when it
//! answers 403 `insufficient_scope`.

use std::{collections::HashMap, sync::Arc};

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use sse_stream::Sse;

use crate::auth::{Access, AuthError, resource::Challenge};

type HttpError = StreamableHttpError<reqwest::Error>;

/// A reqwest client that authorizes each request with the backend's current token.
#[derive(Clone)]
pub struct AuthorizedHttp {
    http: reqwest::Client,
    access: Option<Access>,
}

/// A 401 means the token was refused: with `WWW-Authenticate` rmcp reports `AuthRequired` (the
/// challenge says why), a bare one surfaces as an unexpected response carrying the status.
fn refusal(error: &HttpError) -> Option<Option<Challenge>> {
    match error {
        StreamableHttpError::AuthRequired(e) => Some(Challenge::parse(&e.www_authenticate_header)),
        StreamableHttpError::UnexpectedServerResponse(text) if text.starts_with("HTTP 401") => {
            Some(None)
        }
        _ => None,
    }
}

/// The scopes a 403 `insufficient_scope` asks for (RFC 6750 §3.1), if it names any.
fn wanted_scopes(error: &HttpError) -> Option<Vec<String>> {
    let StreamableHttpError::InsufficientScope(e) = error else {
        return None;
    };
    let from_header = Challenge::parse(&e.www_authenticate_header)
        .map(|c| c.scopes())
        .unwrap_or_default();
    let scopes = if from_header.is_empty() {
        e.required_scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    } else {
        from_header
    };
    Some(scopes).filter(|s: &Vec<String>| !s.is_empty())
}

/// Token failures travel through rmcp as I/O errors; the relay finds the `AuthError` again in
/// the source chain to tell the user what to do.
fn auth_failed(error: AuthError) -> HttpError {
    StreamableHttpError::Io(std::io::Error::other(error))
}

impl AuthorizedHttp {
    /// Authorizes through `access`, or sends no `Authorization` header when `None`.
    pub fn new(http: reqwest::Client, access: Option<Access>) -> Self {
        Self { http, access }
    }

    /// Sends with the backend's token. A `401` renews the token once (shared with concurrent
    /// requests) and sends again; a `403 insufficient_scope` naming scopes gets one new grant
    /// that asks for them too, and one more try. Never a loop: a second refusal is the answer,
    /// in words that say what is likely wrong.
    async fn with_retry<T, F, Fut>(&self, send: F) -> Result<T, HttpError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let Some(access) = &self.access else {
            return send(None).await;
        };
        let token = access.token().await.map_err(auth_failed)?;
        let first = send(Some(token.expose().to_owned())).await;
        let Err(error) = &first else {
            return first;
        };
        if let Some(challenge) = refusal(error) {
            let renewed = access
                .renew_rejected(&token, challenge.as_ref())
                .await
                .map_err(auth_failed)?;
            let second = send(Some(renewed.expose().to_owned())).await;
            return match &second {
                Err(e) if refusal(e).is_some() => {
                    let challenge = refusal(e).flatten();
                    Err(auth_failed(AuthError::Refused {
                        backend: access.backend().to_owned(),
                        profile: access.manager().profile().name.clone(),
                        reason: challenge
                            .as_ref()
                            .and_then(Challenge::describe)
                            .unwrap_or_else(|| "HTTP 401, without saying why".into()),
                        culprit: challenge.as_ref().and_then(Challenge::likely_culprit),
                    }))
                }
                _ => second,
            };
        }
        if let Some(scopes) = wanted_scopes(error) {
            let stepped_up = access.step_up(&token, &scopes).await.map_err(auth_failed)?;
            let second = send(Some(stepped_up.expose().to_owned())).await;
            return match &second {
                Err(e) if wanted_scopes(e).is_some() => {
                    Err(auth_failed(AuthError::ScopeNotGranted {
                        backend: access.backend().to_owned(),
                        scopes: scopes.join(" "),
                        issuer: access.manager().profile().issuer_label().to_owned(),
                    }))
                }
                _ => second,
            };
        }
        first
    }
}

impl StreamableHttpClient for AuthorizedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            None,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            None,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        self.with_retry(|token| {
            self.http.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                token,
                custom_headers.clone(),
                limits,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpError> {
        // Closing must not pop up a browser: use the token we have, and never retry.
        let token = self.access.as_ref().and_then(Access::cached);
        self.http
            .delete_session(
                uri,
                session_id,
                token.map(|t| t.expose().to_owned()),
                custom_headers,
            )
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            None,
            custom_headers,
            StreamableHttpResponseLimits::default().max_sse_event_size,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, HttpError> {
        self.with_retry(|token| {
            self.http.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                token,
                custom_headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }
}
