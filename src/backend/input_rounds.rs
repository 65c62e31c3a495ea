//! A backend of MCP 2026-07-28 asks for input — an elicitation, a sampling, the roots — by
//! answering a `tools/call`, `prompts/get` or `resources/read` with `input_required` rather than
//! by sending the client requests of its own (MRTR). The stdio client speaks the older
//! revision, where the server asks and the client answers: so the proxy asks the client each
//! of those requests itself, and sends the request again with the answers (`inputResponses`)
//! and the backend's `requestState`, until the backend answers for good — at most
//! [`MAX_ROUNDS`] times, as the SDKs do.
//!
//! The other way round — a 2026-07-28 client, a backend of the older revision — is
//! [`crate::downstream::questions`]; [`take_retry`] reads a client's retry for it.

use std::collections::BTreeMap;

use rmcp::model::{ClientRequest, InputRequest, InputRequiredResult, ServerRequest};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::BackendHandler;
use crate::request_error::RequestError;

/// Rounds of input before the backend is taken to be looping.
pub const MAX_ROUNDS: usize = 10;

/// `request` again, with the client's answers to what `asked` asks, or why that cannot be.
/// Each is put to the client by `handler`, as the backend's own requests of the older
/// revision are (under its name); `cancelled`: the caller gave up.
pub async fn answered(
    backend: &str,
    request: &ClientRequest,
    asked: InputRequiredResult,
    handler: &BackendHandler,
    cancelled: &CancellationToken,
) -> Result<ClientRequest, RequestError> {
    let mut responses = BTreeMap::new();
    for (key, input) in asked.input_requests.unwrap_or_default() {
        let asked = match input {
            InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
            InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
            InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
            _ => {
                return Err(RequestError::Internal(format!(
                    "backend '{backend}' asked for input of a kind the proxy does not know"
                )));
            }
        };
        let answer = handler
            .ask_client(asked, Default::default(), cancelled)
            .await
            .map_err(|e| {
                RequestError::Internal(format!(
                    "backend '{backend}' asked for input, and it was not given: {}",
                    e.message
                ))
            })?;
        let value = serde_json::to_value(&answer)
            .map_err(|e| RequestError::Internal(format!("an answer that is not JSON: {e}")))?;
        responses.insert(key, value);
    }
    let mut again = request.clone();
    let state = asked.request_state;
    match &mut again {
        ClientRequest::CallToolRequest(r) => {
            r.params.input_responses = Some(responses);
            r.params.request_state = state;
        }
        ClientRequest::GetPromptRequest(r) => {
            r.params.input_responses = Some(responses);
            r.params.request_state = state;
        }
        ClientRequest::ReadResourceRequest(r) => {
            r.params.input_responses = Some(responses);
            r.params.request_state = state;
        }
        _ => {
            return Err(RequestError::Internal(format!(
                "backend '{backend}' asked for input in answer to a request that cannot take it"
            )));
        }
    }
    Ok(again)
}

/// The answers a client's retry carries.
pub type Retry = (Option<String>, Option<BTreeMap<String, Value>>);

/// `request` without its MRTR fields, and them: `Some` for the three requests that may be
/// answered `input_required` (a first call has neither field), `None` for any other request.
pub fn take_retry(mut request: ClientRequest) -> (ClientRequest, Option<Retry>) {
    let retry = match &mut request {
        ClientRequest::CallToolRequest(r) => (
            r.params.request_state.take(),
            r.params.input_responses.take(),
        ),
        ClientRequest::GetPromptRequest(r) => (
            r.params.request_state.take(),
            r.params.input_responses.take(),
        ),
        ClientRequest::ReadResourceRequest(r) => (
            r.params.request_state.take(),
            r.params.input_responses.take(),
        ),
        _ => return (request, None),
    };
    (request, Some(retry))
}
