//! How the gateway answers a list: whole, from memory, merged from every backend's list by the
//! [catalog](super::catalog). The first answer to each kind waits until every backend is ready
//! or has failed, logins included, up to `gateway.first_list_timeout` — except for backends
//! whose lists are [remembered](crate::remembered) from the last run, served at once; the first tool list also
//! decides whether the gateway offers its own tools for backends that join late (see
//! [`late`]).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerResult, Tool};

use super::{Server, catalog::Exposed, keeper::Keeper, late};
use crate::{config::FallbackTools, lists::Kind, request_error::RequestError};

impl Server {
    /// A whole list, from memory. The first of each kind waits for the backends first.
    pub(super) async fn list(
        &self,
        kind: Kind,
        cursor: Option<String>,
    ) -> Result<ServerResult, RequestError> {
        if let Some(end) = kind.past_the_end(cursor.as_deref()) {
            return Ok(end);
        }
        let Some(shared) = self.shared.get() else {
            return Err(RequestError::NotInitialized);
        };
        if !shared.listed[kind.index()].load(Ordering::SeqCst) {
            self.wait_for_backends(kind).await;
            if kind == Kind::Tools {
                self.first_tool_list();
            }
            // Before the answer is made: a backend whose lists arrive from now on is announced.
            shared.listed[kind.index()].store(true, Ordering::SeqCst);
        }
        Ok(match kind {
            Kind::Tools => {
                let lead = if self.late_tools.load(Ordering::SeqCst) {
                    late::definitions(&self.keepers)
                } else {
                    Vec::new()
                };
                self.whole::<Tool>(lead)
            }
            Kind::Prompts => self.whole::<Prompt>(Vec::new()),
            Kind::Resources => self.whole::<Resource>(Vec::new()),
            Kind::Templates => self.whole::<ResourceTemplate>(Vec::new()),
        })
    }

    /// `lead`, then every backend's items of `T`'s list.
    pub(super) fn whole<T: Exposed>(&self, mut lead: Vec<T>) -> ServerResult {
        let merged = self.catalog.list::<T>(&self.keepers);
        lead.extend(merged.iter().cloned());
        T::answer(T::fresh_page(), lead)
    }

    /// Holds the first list of `kind` until every backend is ready or has failed, up to
    /// `gateway.first_list_timeout`.
    pub(super) async fn wait_for_backends(&self, kind: Kind) {
        let limit = self.first_list_wait();
        // A backend remembered from the last run is listed as it was, at once.
        let waited: Vec<&Arc<Keeper>> = self
            .keepers
            .iter()
            .filter(|s| !s.is_settled() && !s.recalls_list(kind))
            .collect();
        if limit.is_zero() || waited.is_empty() {
            return;
        }
        let started = Instant::now();
        let all = futures::future::join_all(waited.iter().map(|s| s.settled()));
        if tokio::time::timeout(limit, all).await.is_ok() {
            tracing::info!(
                "Answering the first {} after {:.1} s, once every backend was ready or had failed",
                kind.method(),
                started.elapsed().as_secs_f64()
            );
            return;
        }
        let missing: Vec<String> = self
            .keepers
            .iter()
            .filter(|s| !s.is_settled() && !s.recalls_list(kind))
            .map(|s| match s.connection() {
                Ok(_) => format!("'{}' (still reading its lists)", s.backend.name),
                Err(reason) => format!("'{}' ({reason})", s.backend.name),
            })
            .collect();
        tracing::warn!(
            "Answering the first {} after {:.1} s (the client's start-up wait: see \
             gateway.first_list_timeout) without backend {}; they are announced with \
             list_changed when ready",
            kind.method(),
            limit.as_secs_f64(),
            missing.join(", ")
        );
    }

    /// Notes which backends the first tool list has, and offers the gateway's own tools if
    /// some backend is missing from it.
    pub(super) fn first_tool_list(&self) {
        let (present, missing): (Vec<&Arc<Keeper>>, Vec<&Arc<Keeper>>) = self
            .keepers
            .iter()
            .partition(|s| s.listed::<Tool>().is_some());
        if let Ok(mut first) = self.first_tools.lock() {
            *first = Some(present.iter().map(|s| s.backend.name.clone()).collect());
        }
        if self.settings.fallback_tools == FallbackTools::Auto
            && !missing.is_empty()
            && !self.late_tools.swap(true, Ordering::SeqCst)
        {
            let names: Vec<&str> = missing.iter().map(|s| s.backend.name.as_str()).collect();
            tracing::info!(
                "The first tool list lacks backend {}: it carries {} and {}, which reach them \
                 once they are ready",
                names.join(", "),
                late::LIST_TOOLS,
                late::CALL_TOOL
            );
        }
    }
}
