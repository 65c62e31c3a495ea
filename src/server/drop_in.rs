//! The drop-in: one backend, served as it is — except that lists come whole: every page of a
//! list is read from the backend and answered at once, since desktop clients read only the
//! first page (see [`crate::lists`]).
//!
//! `initialize` is answered with the backend's own identity, capabilities and instructions
//! when the backend is connected within the client's start-up wait (see
//! [`client_waits`](super::client_waits); at once with cached tokens), or — while it connects —
//! as it answered last time, [remembered](crate::remembered) with every list it relayed. A
//! first login takes a person longer (10-40 s with MFA) than some clients wait for
//! `initialize`: with nothing remembered, the answer is then a provisional identity of the
//! proxy's own with every list and feature. Either way the keeper goes on connecting, requests
//! wait for the connection (the first list of each kind until the client's first-list wait is
//! over, others up to the backend's `request_timeout`) unless remembered, and once connected
//! every list is announced with `list_changed`. A failed connection is tried again when a
//! request wants it (a person may be back to log in).

use std::sync::{Arc, atomic::Ordering};

use rmcp::{
    RoleServer,
    model::{
        ClientRequest, Implementation, InitializeResult, ProtocolVersion, ServerCapabilities,
        ServerPeerInfo, ServerResult,
    },
    service::RequestContext,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{
    Server,
    keeper::{Keeper, Shared, Status},
};
use crate::{
    lists::{self, Kind},
    request_error::RequestError,
};

impl Server {
    /// The one backend.
    pub(super) fn only(&self) -> Result<&Arc<Keeper>, RequestError> {
        self.keepers
            .first()
            .ok_or_else(|| RequestError::internal("the drop-in serves no backend"))
    }

    /// The rest of `initialize`, its keeper started: the backend's own answer if it is
    /// connected within `gateway.startup_timeout`, else a provisional one.
    pub(super) async fn drop_in_initialize(
        &self,
        shared: &Shared,
        negotiated: ProtocolVersion,
    ) -> Result<ServerResult, RequestError> {
        let keeper = self.only()?;
        let waits = self.waits();
        let _ = self.within_initialize_wait(keeper.introduced()).await;
        let status = {
            // The keeper publishes its connection under the same lock: an answer given before
            // the backend is there is always followed by the announcement that it is.
            let _publishing = shared
                .publishing
                .lock()
                .map_err(|_| RequestError::internal("server state poisoned"))?;
            let status = keeper.status();
            let from_memory = keeper.recalls() && !matches!(status, Status::Ready(_));
            if matches!(status, Status::Connecting) || from_memory {
                for listed in &shared.listed {
                    listed.store(true, Ordering::SeqCst);
                }
            }
            shared.announce.store(true, Ordering::SeqCst);
            status
        };
        match status {
            Status::Ready(connection) => backends_own(keeper, connection.info(), negotiated),
            // As it was last time, while it connects: its lists are announced once it is.
            _ if keeper.recalls() => {
                tracing::info!(
                    "Answering initialize as backend '{}' did last time; it is still connecting",
                    keeper.backend.name
                );
                let mut answer = backends_own(keeper, keeper.introduction(), negotiated)?;
                if let ServerResult::InitializeResult(result) = &mut answer {
                    announces_list_changes(&mut result.capabilities);
                }
                Ok(answer)
            }
            Status::Down(reason) => Err(RequestError::NotConnected(reason)),
            Status::Connecting => {
                tracing::info!(
                    "Answering initialize after {:.1} s, before backend '{}' is connected (a \
                     login in progress?); requests wait for it, the first lists up to {:.1} s of \
                     the start",
                    waits.initialize.as_secs_f64(),
                    keeper.backend.name,
                    waits.first_list.as_secs_f64()
                );
                Ok(ServerResult::InitializeResult(provisional(negotiated)))
            }
        }
    }

    /// Answers a request of the client: lists whole, the rest passed through.
    pub(super) async fn drop_in_answer(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        if let ClientRequest::InitializeRequest(init) = request {
            return self.initialize(init.params, context).await;
        }
        let Some(shared) = self.shared.get() else {
            return Err(RequestError::NotInitialized);
        };
        let keeper = self.only()?;
        if let Some((kind, cursor)) = lists::asked_for(&request) {
            return self.drop_in_list(keeper, kind, cursor, &context.ct).await;
        }
        if let ClientRequest::SetLevelRequest(_) = &request
            && let Ok(mut level) = shared.log_level.lock()
        {
            // Sent to the backend now if it is there, and at every connection from now on.
            *level = Some(request.clone());
        }
        if !matches!(keeper.status(), Status::Ready(_)) {
            // While a person logs in, the session must stay alive: answer what needs no backend.
            match &request {
                ClientRequest::PingRequest(_) | ClientRequest::SetLevelRequest(_) => {
                    return Ok(ServerResult::empty(()));
                }
                _ => {}
            }
        }
        let connection = keeper
            .connection_within(keeper.backend.request_timeout)
            .await?;
        connection.request(request, context.meta, &context.ct).await
    }

    /// Answers a list request with the backend's whole list (a cursor, which the drop-in never
    /// hands out, with the end of it).
    async fn drop_in_list(
        &self,
        keeper: &Keeper,
        kind: Kind,
        cursor: Option<String>,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, RequestError> {
        if let Some(end) = kind.past_the_end(cursor.as_deref()) {
            return Ok(end);
        }
        let first = !self.first_answered[kind.index()].swap(true, Ordering::SeqCst);
        if !matches!(keeper.status(), Status::Ready(_))
            && let Some(remembered) = keeper.recalled_answer(kind)
        {
            return Ok(remembered);
        }
        let limit = if first {
            Some(self.first_list_wait())
        } else {
            keeper.backend.request_timeout
        };
        let connection = keeper.connection_within(limit).await?;
        let (answer, complete) =
            lists::read_answer(&connection, kind, cancelled, lists::LIMITS).await?;
        if complete {
            keeper.remember_answer(&connection, &answer);
        }
        Ok(answer)
    }
}

/// The backend's own `initialize` answer (`server`: what it said), at the negotiated version.
fn backends_own(
    keeper: &Keeper,
    server: Option<Arc<ServerPeerInfo>>,
    negotiated: ProtocolVersion,
) -> Result<ServerResult, RequestError> {
    let Some(server) = server else {
        return Err(RequestError::Internal(format!(
            "backend '{}' sent no initialize result",
            keeper.backend.name
        )));
    };
    let mut result =
        InitializeResult::new(server.capabilities.clone()).with_protocol_version(negotiated);
    if let Some(server_info) = &server.server_info {
        result = result.with_server_info(server_info.clone());
    }
    result.instructions = server.instructions.clone();
    result.meta = server.meta.clone();
    Ok(ServerResult::InitializeResult(result))
}

/// Marks the lists the capabilities offer as announcing changes: an answer from memory is
/// followed by `list_changed` once the backend is connected.
pub(super) fn announces_list_changes(capabilities: &mut ServerCapabilities) {
    if let Some(tools) = &mut capabilities.tools {
        tools.list_changed = Some(true);
    }
    if let Some(prompts) = &mut capabilities.prompts {
        prompts.list_changed = Some(true);
    }
    if let Some(resources) = &mut capabilities.resources {
        resources.list_changed = Some(true);
    }
}

/// What `initialize` says before the backend is connected: every list (changes announced) and
/// feature, under the proxy's own name.
pub(super) fn provisional(negotiated: ProtocolVersion) -> InitializeResult {
    let capabilities: ServerCapabilities = serde_json::from_value(json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"listChanged": true, "subscribe": true},
        "logging": {},
        "completions": {},
    }))
    .unwrap_or_default();
    InitializeResult::new(capabilities)
        .with_protocol_version(negotiated)
        .with_server_info(Implementation::new(
            "authful-mcp-proxy",
            env!("CARGO_PKG_VERSION"),
        ))
}
