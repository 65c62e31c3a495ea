//! The stdio client's era, at the server's edge: one [`Server`] serves a legacy session (opened
//! with `initialize`) and a 2026-07-28 one (no handshake) alike, and only here do they differ:
//!
//! - **what a modern request must carry**: a revision the proxy speaks (else `-32022` naming
//!   those it does) and the client's capabilities in `_meta` (else `-32602`); `ping`,
//!   `logging/setLevel` and `resources/(un)subscribe` are gone from the revision (`-32601`),
//!   as is `subscriptions/listen` from the older ones;
//! - **`server/discover`**, answered from the configuration and what the backends said of
//!   themselves, now or in the last run ([`remembered`](crate::remembered)) — never by
//!   connecting one: a probe may come from a process the client starts only to ask, and a
//!   login there would open a browser for nothing;
//! - **the shape of an answer**: `resultType: "complete"` and caching hints for a modern
//!   client; neither, and no non-object tool output, for a legacy one; a resource not found is
//!   `-32602` in the modern revision, `-32002` before.
//!
//! rmcp checks the first modern request itself and then starts the session (see
//! [`crate::protocol`]); every check here applies to each request after it.

use rmcp::{
    RoleServer,
    model::{
        ClientRequest, DiscoverResult, ErrorCode, ErrorData, Implementation, ResultType,
        ServerResult,
    },
    service::RequestContext,
};

use super::Server;
use crate::{config::Mode, downstream::Era, legacy_tasks, protocol, request_error::RequestError};

/// The era of the session `context` belongs to: a session rmcp started without `initialize`
/// (or none yet: a `server/discover` probe) is modern.
pub(super) fn of(context: &RequestContext<RoleServer>) -> Era {
    if context.peer.peer_info().is_some() {
        Era::Legacy
    } else {
        Era::Modern
    }
}

/// Whether a request of a client of `era` may be served; the error it gets if not.
pub(super) fn check(
    era: Era,
    request: &ClientRequest,
    context: &RequestContext<RoleServer>,
) -> Result<(), ErrorData> {
    #[allow(deprecated)] // logging/setLevel: gone from 2026-07-28, still served before.
    let gone = match (era, request) {
        (Era::Legacy, ClientRequest::SubscriptionsListenRequest(_)) => true,
        (Era::Legacy, _) => return Ok(()),
        // A second `initialize` is refused as such.
        (Era::Modern, ClientRequest::InitializeRequest(_)) => return Ok(()),
        (
            Era::Modern,
            ClientRequest::PingRequest(_)
            | ClientRequest::SetLevelRequest(_)
            | ClientRequest::SubscribeRequest(_)
            | ClientRequest::UnsubscribeRequest(_),
        ) => true,
        (Era::Modern, _) => false,
    };
    if gone {
        return Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "Method not found: {} (not part of the MCP revision this client speaks)",
                request.method()
            ),
            None,
        ));
    }
    let meta = &context.meta;
    if let Some(requested) = meta.protocol_version()
        && !protocol::SUPPORTED.contains(&requested)
    {
        return Err(ErrorData::unsupported_protocol_version(
            requested,
            protocol::SUPPORTED,
        ));
    }
    let missing = meta.missing_required_keys(&protocol::MODERN);
    if !missing.is_empty() {
        return Err(ErrorData::invalid_params(
            format!(
                "request _meta is missing or has malformed required fields: {}",
                missing.join(", ")
            ),
            None,
        ));
    }
    Ok(())
}

/// `answer` in the shape a client of `era` reads.
pub(super) fn shape(
    era: Era,
    answer: Result<ServerResult, ErrorData>,
) -> Result<ServerResult, ErrorData> {
    match era {
        Era::Modern => answer
            .map(|mut result| {
                complete(&mut result);
                result.fill_missing_cache_hints();
                legacy_tasks::forget(&mut result);
                result
            })
            .map_err(|mut error| {
                if error.code == ErrorCode::RESOURCE_NOT_FOUND {
                    error.code = ErrorCode::INVALID_PARAMS;
                }
                error
            }),
        Era::Legacy => answer.and_then(|mut result| {
            if let ServerResult::InputRequiredResult(_) = result {
                // A backend's questions reach a legacy client as requests of their own
                // (`backend/input_rounds.rs`); this is a bug if it is ever seen.
                return Err(ErrorData::internal_error(
                    "an input_required answer for a client of an older MCP revision",
                    None,
                ));
            }
            result.strip_result_type_for_legacy_peer();
            result.strip_non_object_output_for_legacy_peer();
            Ok(result)
        }),
    }
}

/// Marks an answer `resultType: "complete"` where its type has the field and it is unset.
fn complete(result: &mut ServerResult) {
    let result_type = match result {
        ServerResult::CompleteResult(r) => &mut r.result_type,
        ServerResult::GetPromptResult(r) => &mut r.result_type,
        ServerResult::ListPromptsResult(r) => &mut r.result_type,
        ServerResult::ListResourcesResult(r) => &mut r.result_type,
        ServerResult::ListResourceTemplatesResult(r) => &mut r.result_type,
        ServerResult::ReadResourceResult(r) => &mut r.result_type,
        ServerResult::ListToolsResult(r) => &mut r.result_type,
        ServerResult::CallToolResult(r) => &mut r.result_type,
        _ => return,
    };
    result_type.get_or_insert(ResultType::COMPLETE);
}

impl Server {
    /// What the proxy is, for `server/discover`: as `initialize` would say it, from what is
    /// known now or remembered, without connecting anything.
    pub(super) fn discover(&self) -> Result<ServerResult, RequestError> {
        let (capabilities, instructions, server_info) = match self.mode {
            Mode::Gateway => (
                self.capabilities()?,
                self.instructions(),
                Implementation::new(self.settings.name.clone(), env!("CARGO_PKG_VERSION")),
            ),
            Mode::DropIn => {
                let keeper = self.only()?;
                match keeper.introduction() {
                    Some(known) => {
                        let mut capabilities = known.capabilities.clone();
                        super::drop_in::announces_list_changes(&mut capabilities);
                        let name = known.server_info.clone().unwrap_or_else(|| {
                            Implementation::new("authful-mcp-proxy", env!("CARGO_PKG_VERSION"))
                        });
                        (capabilities, known.instructions.clone(), name)
                    }
                    None => {
                        let provisional = super::drop_in::provisional(protocol::MODERN);
                        (provisional.capabilities, None, provisional.server_info)
                    }
                }
            }
        };
        let mut result = DiscoverResult::new(protocol::SUPPORTED.to_vec(), capabilities)
            .with_server_info(server_info);
        result.instructions = instructions;
        Ok(ServerResult::DiscoverResult(result))
    }

    /// The session of a modern client, begun at its first request (there is no `initialize`):
    /// the backends start connecting, introduced as the client the request's `_meta` describes.
    pub(super) async fn begin_modern(
        &self,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), RequestError> {
        if self.shared.get().is_some() {
            return Ok(());
        }
        let client = protocol::client_of(&context.meta);
        let Some(shared) = self.begin(context.peer.clone(), Era::Modern, client) else {
            // A request that came at the same time began it.
            return Ok(());
        };
        // Nothing waits for an answer to `initialize`: changes are announced at once, to the
        // streams that ask for them.
        shared
            .announce
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // The drop-in's lists may be answered from memory while it connects: then they are
        // announced once it is. (Lists read from the backend need no announcement.)
        if self.mode == Mode::DropIn && self.only()?.recalls() {
            for listed in &shared.listed {
                listed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Ok(())
    }
}
