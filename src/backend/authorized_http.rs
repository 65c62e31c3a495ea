//! The HTTP layer under rmcp's Streamable HTTP client: a fresh bearer token on every request,
//! static headers, one renewal-and-retry when the backend answers 401, and one step-up when it
//! answers 403 `insufficient_scope` to a request the client made.
//!
//! Which requests the client made is marked on the request itself, in its `_meta`
//! ([`CLIENT_REQUEST`]): rmcp sends from a task of its own, so nothing else would reach this
//! layer. The mark is taken off before the request leaves; a request without it (the lists
//! the gateway reads on its own, the log level it sets) never makes the proxy sign in for
//! more scopes.
//!
//! The layer also watches the answers it passes on. rmcp ends a session whose answer to
//! `initialize` breaks off or grows past its limits, and says only "connection closed"; so the
//! first answer that failed, and why ([`AnswerError`]), is noted in [`BrokenAnswers`], where
//! [`connect`](super::connect) finds it. A layer built
//! [`with_answer_limit`](AuthorizedHttp::with_answer_limit) reads no more of any one answer
//! than that limit — `status`, which only checks that a backend answers, reads 1 MiB at most.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::{StreamExt, stream::BoxStream};
use http::{HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, ClientRequest, GetMeta},
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
        StreamableHttpResponseLimits,
    },
};
use sse_stream::Sse;

use crate::{
    auth::{Access, AuthError, resource::Challenge},
    error_text, legacy_tasks,
};

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

/// Why an answer the backend began did not reach its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// It went past `limit` bytes — in one JSON body, in one event of its SSE stream, or in
    /// the events of its stream together — and no more of it was read.
    #[error("its answer went past {} KiB, and no more of it was read", .limit / 1024)]
    TooLarge {
        /// The most that is read of one answer.
        limit: usize,
    },
    /// The stream broke off, or could not be read as SSE.
    #[error("its answer broke off: {0}")]
    BrokeOff(String),
}

impl AnswerError {
    /// What `error`, met in an SSE stream whose events may hold `max_event` bytes each, says
    /// about the answer. rmcp's error for an event past its limit is of a private type, so it
    /// is known by its words (a test of this module holds rmcp to them).
    fn of(error: &SseError, max_event: usize) -> Self {
        if let SseError::Body(inner) = error
            && let Some(ours) = inner.downcast_ref::<AnswerError>()
        {
            return ours.clone();
        }
        let text = error_text::chain(error);
        if text.contains("exceeded the maximum size") {
            AnswerError::TooLarge { limit: max_event }
        } else {
            AnswerError::BrokeOff(text)
        }
    }
}

/// The first answer of a connection that failed, and why: shared by the layer that notes it
/// and the [`connect`](super::connect) that reports it.
#[derive(Clone, Default)]
pub struct BrokenAnswers(Arc<Mutex<Option<AnswerError>>>);

impl BrokenAnswers {
    /// Notes `error`, unless an earlier failure is noted: the first is the cause.
    fn note(&self, error: AnswerError) {
        if let Ok(mut first) = self.0.lock() {
            first.get_or_insert(error);
        }
    }

    /// The first answer that failed, if one has.
    pub fn first(&self) -> Option<AnswerError> {
        self.0.lock().ok().and_then(|first| first.clone())
    }
}

/// The bytes an SSE event holds once parsed: what reading it cost, as near as can be told.
fn event_size(event: &Sse) -> usize {
    [&event.event, &event.data, &event.id]
        .iter()
        .map(|field| field.as_ref().map_or(0, String::len))
        .sum()
}

/// The status with which a server refused an `initialize` POST without a JSON-RPC error in its
/// body: `400`, `404` or `405`, which the specification reads as "perhaps an HTTP+SSE server"
/// (rmcp keeps the status only in its error's text).
#[derive(Clone, Default)]
pub struct RefusedInitialize(Arc<Mutex<Option<u16>>>);

impl RefusedInitialize {
    fn note(&self, error: &HttpError) {
        let StreamableHttpError::UnexpectedServerResponse(text) = error else {
            return;
        };
        let status = text
            .strip_prefix("HTTP ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| matches!(code, 400 | 404 | 405));
        if let (Some(status), Ok(mut noted)) = (status, self.0.lock()) {
            *noted = Some(status);
        }
    }

    /// The status, if the server refused so.
    pub fn status(&self) -> Option<u16> {
        self.0.lock().ok().and_then(|s| *s)
    }
}

/// A reqwest client that authorizes each request with the backend's current token.
#[derive(Clone)]
pub struct AuthorizedHttp {
    http: reqwest::Client,
    access: Option<Access>,
    /// The most read of any one answer, below rmcp's own limits; `None`: rmcp's limits alone.
    max_answer: Option<usize>,
    broken: BrokenAnswers,
    refused: RefusedInitialize,
}

/// The reason [`AuthError::Refused`] gives when the backend refused a renewed token with a
/// bare `401`, saying nothing of why.
pub const UNEXPLAINED_REFUSAL: &str = "HTTP 401, without saying why";

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
        Self {
            http,
            access,
            max_answer: None,
            broken: BrokenAnswers::default(),
            refused: RefusedInitialize::default(),
        }
    }

    /// The same layer, reading no more than `bytes` of any one answer: of a JSON body, of one
    /// SSE event, and of the events of one request's stream together. (rmcp's own limits,
    /// 16 MiB a body or an event, are for answers the client waits for; a check needs less.)
    pub fn with_answer_limit(mut self, bytes: usize) -> Self {
        self.max_answer = Some(bytes);
        self
    }

    /// Where the first answer that failed is noted.
    pub fn broken_answers(&self) -> BrokenAnswers {
        self.broken.clone()
    }

    /// Where a refused `initialize` is noted.
    pub fn refused_initialize(&self) -> RefusedInitialize {
        self.refused.clone()
    }

    /// `limits`, lowered to this layer's own limit.
    fn capped(&self, mut limits: StreamableHttpResponseLimits) -> StreamableHttpResponseLimits {
        if let Some(max) = self.max_answer {
            limits.max_sse_event_size = limits.max_sse_event_size.min(max);
            limits.max_json_response_size = limits.max_json_response_size.min(max);
            limits.max_error_response_size = limits.max_error_response_size.min(max);
        }
        limits
    }

    /// The answer to a POST, watched: a JSON body past the limit and a stream that fails are
    /// noted in [`BrokenAnswers`].
    ///
    /// What rmcp's types would drop of the tasks of 2025-11-25 is stowed on the way (see
    /// [`legacy_tasks`]); `whole`: the answer is one that travels whole.
    fn watched(
        &self,
        answer: Result<StreamableHttpPostResponse, HttpError>,
        limits: StreamableHttpResponseLimits,
        whole: bool,
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        match answer {
            Ok(StreamableHttpPostResponse::Sse(events, session)) => {
                let events = self
                    .watch(events, limits.max_sse_event_size)
                    .map(move |event| {
                        event.map(|mut event| {
                            if let Some(stowed) = event
                                .data
                                .as_deref()
                                .and_then(|d| legacy_tasks::stow_answer(d, whole))
                            {
                                event.data = Some(stowed);
                            }
                            event
                        })
                    });
                Ok(StreamableHttpPostResponse::Sse(events.boxed(), session))
            }
            Err(StreamableHttpError::ResponseBodyTooLarge { max_size }) => {
                self.broken.note(AnswerError::TooLarge { limit: max_size });
                Err(StreamableHttpError::ResponseBodyTooLarge { max_size })
            }
            other => other,
        }
    }

    /// `events`, passed on while the answer stays within this layer's limit. The first error
    /// ends the answer, as it ends rmcp's reading of it, and is noted: rmcp's, for an event past
    /// `max_event` bytes or a broken connection, or this layer's own, when the events together
    /// go past its limit.
    fn watch(
        &self,
        events: BoxStream<'static, Result<Sse, SseError>>,
        max_event: usize,
    ) -> BoxStream<'static, Result<Sse, SseError>> {
        let (limit, broken) = (self.max_answer, self.broken.clone());
        futures::stream::unfold(Some((events, 0_usize)), move |state| {
            let broken = broken.clone();
            async move {
                let (mut events, read) = state?;
                match events.next().await? {
                    Ok(event) => {
                        let read = read.saturating_add(event_size(&event));
                        if let Some(limit) = limit
                            && read > limit
                        {
                            let error = AnswerError::TooLarge { limit };
                            broken.note(error.clone());
                            return Some((Err(SseError::Body(Box::new(error))), None));
                        }
                        Some((Ok(event), Some((events, read))))
                    }
                    Err(error) => {
                        broken.note(AnswerError::of(&error, max_event));
                        Some((Err(error), None))
                    }
                }
            }
        })
        .boxed()
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
            let answer = send(None).await;
            return match answer.as_ref().err().and_then(refusal) {
                // The server wants a sign-in the configuration does not give it.
                Some(challenge) => Err(auth_failed(AuthError::NoSignIn {
                    said: challenge
                        .as_ref()
                        .and_then(Challenge::describe)
                        .map(|d| error_text::untrusted(&d)),
                    names_metadata: challenge.is_some_and(|c| c.resource_metadata.is_some()),
                })),
                None => answer,
            };
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
                            .unwrap_or_else(|| UNEXPLAINED_REFUSAL.into()),
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
        let initialize = matches!(
            &message,
            ClientJsonRpcMessage::Request(r) if matches!(r.request, ClientRequest::InitializeRequest(_))
        );
        let whole = matches!(
            &message,
            ClientJsonRpcMessage::Request(r) if legacy_tasks::answer_carried_whole(&r.request)
        );
        let limits = self.capped(limits);
        let answer = self
            .with_retry(from_client, |token| {
                self.http.post_message_with_response_limits(
                    uri.clone(),
                    message.clone(),
                    session_id.clone(),
                    token,
                    custom_headers.clone(),
                    limits,
                )
            })
            .await;
        if initialize && let Err(error) = &answer {
            self.refused.note(error);
        }
        self.watched(answer, limits, whole)
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
        let max_sse_event_size = self
            .max_answer
            .map_or(max_sse_event_size, |max| max.min(max_sse_event_size));
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
    use axum::{
        Router,
        body::{Body, Bytes},
        http::header,
        routing::post,
    };
    use rmcp::model::{CallToolRequestParams, ClientRequest, JsonRpcRequest, RequestId};

    use super::*;

    /// A server that answers every POST at `/sse` with an SSE event of 4 KiB that never ends,
    /// and at `/json` with a JSON body of 4 KiB; and the URL it serves.
    async fn oversized() -> String {
        let router = Router::new()
            .route(
                "/sse",
                post(|| async {
                    let head = futures::stream::once(async {
                        Ok::<_, std::convert::Infallible>(Bytes::from(format!(
                            "data: {}",
                            "a".repeat(4096)
                        )))
                    });
                    let tail = futures::stream::pending();
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        Body::from_stream(head.chain(tail)),
                    )
                }),
            )
            .route(
                "/json",
                post(|| async {
                    let result = serde_json::json!({"text": "a".repeat(4096)});
                    axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": 1, "result": result}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    /// rmcp's own error for an SSE event past the limit is known by its words (see
    /// [`AnswerError::of`]): this holds rmcp to them. A JSON body past the limit is noted too.
    #[tokio::test]
    async fn answers_past_the_limit_are_noted_as_too_large() {
        let url = oversized().await;
        let layer = AuthorizedHttp::new(reqwest::Client::new(), None).with_answer_limit(1024);
        let answer = layer
            .post_message(
                format!("{url}/sse").into(),
                call(serde_json::json!({})),
                None,
                None,
                HashMap::new(),
            )
            .await
            .unwrap();
        let StreamableHttpPostResponse::Sse(mut events, _) = answer else {
            panic!("an SSE answer");
        };
        assert!(events.next().await.is_some_and(|event| event.is_err()));
        assert!(events.next().await.is_none(), "an answer ends at its error");
        assert_eq!(
            layer.broken_answers().first(),
            Some(AnswerError::TooLarge { limit: 1024 })
        );

        let layer = AuthorizedHttp::new(reqwest::Client::new(), None).with_answer_limit(1024);
        let answer = layer
            .post_message(
                format!("{url}/json").into(),
                call(serde_json::json!({})),
                None,
                None,
                HashMap::new(),
            )
            .await;
        assert!(matches!(
            answer,
            Err(StreamableHttpError::ResponseBodyTooLarge { max_size: 1024 })
        ));
        assert_eq!(
            layer.broken_answers().first(),
            Some(AnswerError::TooLarge { limit: 1024 })
        );
    }

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
