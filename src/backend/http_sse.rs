//! The HTTP+SSE transport of MCP 2024-11-05, client side: for servers from before Streamable
//! HTTP, which the Python original reaches (fastmcp picks the transport by the URL), so its
//! users' URLs keep working here.
//!
//! A `GET` on the server's URL opens a stream of server-sent events. Its first event,
//! `endpoint`, names where to send: every message to the server is a `POST` there, and every
//! message from it, answers included, is a `message` event on the stream. The stream's end is
//! the session's end (the server keeps its state per stream): rmcp then ends the session, and
//! the backend's keeper connects again, as for any lost backend.
//!
//! Both requests go through [`AuthorizedHttp`], the layer Streamable HTTP uses: a fresh token
//! on each, one renewal on `401`, the step-up rules, the static headers, the same bounds on an
//! event. The endpoint must be on the server's own origin: a server (untrusted) cannot make
//! the proxy send its token anywhere else.
//!
//! Which transport a backend gets is [`Transport`](crate::config::Transport): the
//! configuration's; or, by default, this one first where the URL's path has a segment `sse`
//! (as fastmcp, so the Python original, decides; Streamable HTTP next, should the server be
//! one), and elsewhere Streamable HTTP falling back to this one when the server refuses its
//! `initialize` `POST` with `400`/`404`/`405` and no JSON-RPC error, as the specification's
//! backwards-compatibility section says.

use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;
use http::{HeaderName, HeaderValue};
use rmcp::{
    RoleClient,
    model::ServerJsonRpcMessage,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{
        Transport,
        streamable_http_client::{
            StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
            StreamableHttpResponseLimits,
        },
    },
};
use tokio::{sync::mpsc, task::JoinHandle};
use url::Url;

use super::authorized_http::AuthorizedHttp;
use crate::{error_text, legacy_tasks};

type HttpError = StreamableHttpError<reqwest::Error>;

/// Events a server may send before `endpoint` (comments and pings are not events).
const EVENTS_BEFORE_ENDPOINT: usize = 16;

/// Messages read from the stream and not yet taken by rmcp; the stream waits beyond that.
const QUEUED_MESSAGES: usize = 64;

/// Why the stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The `GET` failed: refused, not a stream, unauthorized.
    #[error("the HTTP+SSE stream could not be opened: {}", error_text::untrusted(&.0.to_string()))]
    Http(HttpError),
    /// The stream ended, failed or went on without naming its endpoint.
    #[error("the HTTP+SSE stream named no endpoint ({0})")]
    NoEndpoint(&'static str),
    /// The endpoint is not a URL.
    #[error("the HTTP+SSE stream named an endpoint that is not a URL: {0}")]
    BadEndpoint(String),
    /// The endpoint is on another origin: the token would go there.
    #[error(
        "the HTTP+SSE stream named an endpoint on another origin ({0}); it was not used, since \
         the token would go there"
    )]
    ForeignEndpoint(String),
}

impl OpenError {
    /// Whether a stream was opened (and so the server speaks HTTP+SSE, if badly): then no
    /// other transport is worth trying, and this is what to tell.
    pub fn is_from_a_stream(&self) -> bool {
        !matches!(self, Self::Http(_))
    }
}

/// Whether fastmcp (so the Python original) would take `url` for an HTTP+SSE server: its path
/// has a segment `sse` (`/sse`, `/sse/`, `/v1/sse/x`).
pub fn named_like_sse(url: &Url) -> bool {
    url.path_segments()
        .is_some_and(|mut segments| segments.any(|s| s == "sse"))
}

/// An open HTTP+SSE session with one server.
pub struct HttpSse {
    http: AuthorizedHttp,
    endpoint: Arc<str>,
    headers: HashMap<HeaderName, HeaderValue>,
    limits: StreamableHttpResponseLimits,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
    /// Answers a `POST` carried in its own body (some servers do), for `receive`.
    answered: mpsc::UnboundedSender<ServerJsonRpcMessage>,
    answers: mpsc::UnboundedReceiver<ServerJsonRpcMessage>,
    /// The ids of requests whose answers, on the stream, travel whole (see [`legacy_tasks`]).
    carried_whole: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    reader: JoinHandle<()>,
}

impl HttpSse {
    /// Opens the stream at `url` and reads up to its `endpoint`; the rest is read in the
    /// background, for [`Transport::receive`].
    pub async fn open(
        http: AuthorizedHttp,
        url: &Url,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<Self, OpenError> {
        let limits = StreamableHttpResponseLimits::default();
        let mut events = http
            .get_stream_with_max_sse_event_size(
                url.as_str().into(),
                None,
                None,
                None,
                headers.clone(),
                limits.max_sse_event_size,
            )
            .await
            .map_err(OpenError::Http)?;
        let mut skipped = 0;
        let named = loop {
            match events.next().await {
                Some(Ok(event)) if event.event.as_deref() == Some("endpoint") => {
                    break event.data.unwrap_or_default();
                }
                Some(Ok(_)) if skipped < EVENTS_BEFORE_ENDPOINT => skipped += 1,
                Some(Ok(_)) => return Err(OpenError::NoEndpoint("other events came first")),
                Some(Err(_)) => return Err(OpenError::NoEndpoint("the stream failed")),
                None => return Err(OpenError::NoEndpoint("the stream ended")),
            }
        };
        let endpoint = url
            .join(named.trim())
            .map_err(|_| OpenError::BadEndpoint(error_text::untrusted(&named)))?;
        if endpoint.origin() != url.origin() {
            return Err(OpenError::ForeignEndpoint(error_text::untrusted(
                &endpoint.origin().ascii_serialization(),
            )));
        }
        let (to_rmcp, incoming) = mpsc::channel(QUEUED_MESSAGES);
        let carried_whole = Arc::<std::sync::Mutex<std::collections::HashSet<String>>>::default();
        let whole_ids = Arc::clone(&carried_whole);
        let reader = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Ok(event) = event else {
                    // Broken or past its bounds: the session is over (rmcp says why it ended).
                    tracing::debug!("The HTTP+SSE stream failed; the session ends");
                    break;
                };
                // `message` is the one event of the protocol; unnamed events are messages too.
                if !matches!(event.event.as_deref(), None | Some("message")) {
                    continue;
                }
                let mut data = event.data.unwrap_or_default();
                let whole = whole_ids.lock().is_ok_and(|mut ids| {
                    !ids.is_empty() && answer_id(&data).is_some_and(|id| ids.remove(&id))
                });
                if let Some(stowed) = legacy_tasks::stow_answer(&data, whole) {
                    data = stowed;
                }
                match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                    Ok(message) => {
                        if to_rmcp.send(message).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(
                        "Ignored an HTTP+SSE event that is not a JSON-RPC message ({e}): {}",
                        error_text::untrusted(&data)
                    ),
                }
            }
        });
        let (answered, answers) = mpsc::unbounded_channel();
        Ok(Self {
            http,
            endpoint: endpoint.as_str().into(),
            headers,
            limits,
            incoming,
            answered,
            answers,
            carried_whole,
            reader,
        })
    }
}

/// The id of a response (as JSON), read without reading the rest of it as a message.
fn answer_id(data: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        id: serde_json::Value,
        result: serde::de::IgnoredAny,
    }
    let answer: Answer = serde_json::from_str(data).ok()?;
    let _ = answer.result;
    serde_json::to_string(&answer.id).ok()
}

impl Drop for HttpSse {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Transport<RoleClient> for HttpSse {
    type Error = HttpError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let TxJsonRpcMessage::<RoleClient>::Request(request) = &item
            && legacy_tasks::answer_carried_whole(&request.request)
            && let (Ok(id), Ok(mut ids)) = (
                serde_json::to_string(&request.id),
                self.carried_whole.lock(),
            )
        {
            ids.insert(id);
        }
        let (http, endpoint, headers, limits, answered) = (
            self.http.clone(),
            self.endpoint.clone(),
            self.headers.clone(),
            self.limits,
            self.answered.clone(),
        );
        async move {
            match http
                .post_message_with_response_limits(endpoint, item, None, None, headers, limits)
                .await?
            {
                StreamableHttpPostResponse::Accepted => Ok(()),
                // An answer in the POST's own body, as some servers give: read like the stream.
                StreamableHttpPostResponse::Json(message, _) => {
                    let _ = answered.send(message);
                    Ok(())
                }
                StreamableHttpPostResponse::Sse(mut events, _) => {
                    while let Some(Ok(event)) = events.next().await {
                        if let Some(message) = event
                            .data
                            .and_then(|d| serde_json::from_str::<ServerJsonRpcMessage>(&d).ok())
                        {
                            let _ = answered.send(message);
                        }
                    }
                    Ok(())
                }
                // Nothing else is defined for a POST's answer yet; nothing to pass on.
                _ => Ok(()),
            }
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        tokio::select! {
            biased;
            Some(message) = self.answers.recv() => Some(message),
            message = self.incoming.recv() => message,
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.reader.abort();
        self.incoming.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_named_like_sse_are_the_ones_fastmcp_takes_for_sse() {
        for (url, sse) in [
            ("https://mcp.example.com/sse", true),
            ("https://mcp.example.com/sse/", true),
            ("https://mcp.example.com/v1/sse/x", true),
            ("https://mcp.example.com/mcp", false),
            ("https://mcp.example.com/ssee", false),
            ("https://mcp.example.com/my-sse", false),
            ("https://sse.example.com/mcp", false),
        ] {
            let url = Url::parse(url).unwrap();
            assert_eq!(named_like_sse(&url), sse, "{url}");
        }
    }
}
