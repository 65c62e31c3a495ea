//! The HTTP layer under rmcp's Streamable HTTP client: a fresh bearer token on every request,
//! static headers, and one renewal-and-retry when the backend answers 401.

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

use crate::{auth::TokenManager, secret::Secret};

type HttpError = StreamableHttpError<reqwest::Error>;

/// A reqwest client that authorizes each request with the profile's current token.
#[derive(Clone)]
pub struct AuthorizedHttp {
    http: reqwest::Client,
    tokens: Option<Arc<TokenManager>>,
}

/// A 401 means the token was refused: with `WWW-Authenticate` rmcp reports `AuthRequired`, a
/// bare one surfaces as an unexpected response carrying the status.
fn is_unauthorized(error: &HttpError) -> bool {
    match error {
        StreamableHttpError::AuthRequired(_) => true,
        StreamableHttpError::UnexpectedServerResponse(text) => text.starts_with("HTTP 401"),
        _ => false,
    }
}

/// Token failures travel through rmcp as I/O errors; the relay finds the `AuthError` again in
/// the source chain to tell the user what to do.
fn auth_failed(error: crate::auth::AuthError) -> HttpError {
    StreamableHttpError::Io(std::io::Error::other(error))
}

impl AuthorizedHttp {
    /// Authorizes with `tokens`, or sends no `Authorization` header when `None`.
    pub fn new(http: reqwest::Client, tokens: Option<Arc<TokenManager>>) -> Self {
        Self { http, tokens }
    }

    async fn token(&self) -> Result<Option<Secret>, HttpError> {
        match &self.tokens {
            None => Ok(None),
            Some(tokens) => tokens.access_token().await.map(Some).map_err(auth_failed),
        }
    }

    /// Sends once; on a 401 renews the token (once, shared with concurrent requests) and sends
    /// again.
    async fn with_retry<T, F, Fut>(&self, send: F) -> Result<T, HttpError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let token = self.token().await?;
        let first = send(token.as_ref().map(|t| t.expose().to_owned())).await;
        match (first, &self.tokens, token) {
            (Err(e), Some(tokens), Some(rejected)) if is_unauthorized(&e) => {
                let renewed = tokens
                    .renew_rejected(&rejected)
                    .await
                    .map_err(auth_failed)?;
                send(Some(renewed.expose().to_owned())).await
            }
            (result, _, _) => result,
        }
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
        let token = match &self.tokens {
            Some(tokens) => tokens.cached_token(),
            None => None,
        };
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
