//! The HTTP layer under rmcp's Streamable HTTP client: a fresh bearer token on every request,
//! static headers, one renewal-and-retry when the backend answers 401, and one step-up when it
//! answers 403 `insufficient_scope` to a request the client made.
//!
//! Which requests the client made is marked on the request itself, in its `_meta`
//! ([`CLIENT_REQUEST`]): rmcp sends from a task of its own, so nothing else would reach this
//! layer. The mark is taken off before the request leaves; a request without it (the lists
//! the gateway reads on its own, the log level it sets) never makes the proxy sign in for
//! more scopes.

use std::{collections::HashMap, sync::Arc};

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, GetMeta},
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use sse_stream::Sse;

use crate::auth::{Access, AuthError, resource::Challenge};

type HttpError = StreamableHttpError<reqwest::Error>;

/// The `_meta` key that marks a request the client made (see the [module](self)); never sent.
pub const CLIENT_REQUEST: &str = "authful-mcp-proxy/client-request";

/// `message` without the client's mark, and whether it had one.
fn take_client_mark(mut message: ClientJsonRpcMessage) -> (ClientJsonRpcMessage, bool) {
    let marked = match &mut message {
        ClientJsonRpcMessage::Request(request) => request
            .request
            .get_meta_mut()
            .remove(CLIENT_REQUEST)
            .is_some(),
        _ => false,
    };
    (message, marked)
}

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

/// The scopes a 403 asks for, if its challenge says `error="insufficient_scope"` (RFC 6750
/// §3.1) and names any. rmcp reports every 403 with a `WWW-Authenticate` header as
/// insufficient scope; any other 403 is an answer, not a reason to sign in.
fn wanted_scopes(error: &HttpError) -> Option<Vec<String>> {
    let StreamableHttpError::InsufficientScope(e) = error else {
        return None;
    };
    let challenge = Challenge::parse(&e.www_authenticate_header)?;
    if challenge.error.as_deref() != Some("insufficient_scope") {
        return None;
    }
    Some(challenge.scopes()).filter(|s| !s.is_empty())
}

/// Token failures travel through rmcp as I/O errors; the server finds the `AuthError` again in
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
    /// requests) and sends again; a `403 insufficient_scope` naming scopes, to a request the
    /// client made (`from_client`), gets one token that has them too, if the backend may have
    /// one, and one more try. Never a loop: a second refusal is the answer, in words that say
    /// what is likely wrong.
    async fn with_retry<T, F, Fut>(&self, from_client: bool, send: F) -> Result<T, HttpError>
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
            let stepped_up = access
                .step_up(&token, &scopes, from_client)
                .await
                .map_err(auth_failed)?;
            let second = send(Some(stepped_up.expose().to_owned())).await;
            return match &second {
                Err(e) if wanted_scopes(e).is_some() => Err(auth_failed(
                    access.scope_refusal(&stepped_up, &scopes).await,
                )),
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
        let (message, from_client) = take_client_mark(message);
        self.with_retry(from_client, |token| {
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
        // The stream the proxy keeps open on its own: never a reason to sign in for scopes.
        self.with_retry(false, |token| {
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

#[cfg(test)]
mod tests {
    use rmcp::model::{CallToolRequestParams, ClientRequest, JsonRpcRequest, RequestId};

    use super::*;

    fn call(meta: serde_json::Value) -> ClientJsonRpcMessage {
        let mut request = ClientRequest::CallToolRequest(rmcp::model::Request::new(
            CallToolRequestParams::new("t"),
        ));
        if let serde_json::Value::Object(meta) = meta {
            request.get_meta_mut().0.0.extend(meta);
        }
        ClientJsonRpcMessage::Request(JsonRpcRequest::new(RequestId::Number(1), request))
    }

    #[test]
    fn the_clients_mark_is_taken_off_before_a_request_leaves() {
        let (message, marked) = take_client_mark(call(serde_json::json!({
            CLIENT_REQUEST: true,
            "progressToken": 7,
        })));
        assert!(marked);
        let sent = serde_json::to_value(&message).unwrap();
        assert_eq!(
            sent["params"]["_meta"],
            serde_json::json!({"progressToken": 7})
        );
        let (_, marked) = take_client_mark(call(serde_json::json!({"progressToken": 7})));
        assert!(!marked, "the proxy's own requests carry no mark");
    }
}
