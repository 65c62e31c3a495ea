//! Tasks in the gateway. A task is its backend's: the answer to a call that started one names
//! it (`task.taskId`), and from then on `tasks/get`, `tasks/result`, `tasks/cancel` (and the
//! 2026-07-28 extension's `tasks/update`) about it go to that backend. `tasks/list` is answered
//! whole, from every backend that lists its tasks. (The drop-in passes all of this through as it
//! is; how tasks of 2025-11-25 cross rmcp's types is [`crate::legacy_tasks`].)

use std::sync::Arc;

use rmcp::{
    RoleServer,
    model::{ClientRequest, CustomRequest, ServerResult},
    service::RequestContext,
};
use serde_json::{Value, json};

use super::{Server, keeper::Keeper};
use crate::{legacy_tasks::STOWED, request_error::RequestError};

/// The most pages of one backend's `tasks/list` read.
const MAX_PAGES: usize = 100;

/// Whether `request` is about a task (and so goes where the task is).
pub(super) fn is_about_a_task(request: &ClientRequest) -> bool {
    match request {
        ClientRequest::GetTaskRequest(_)
        | ClientRequest::CancelTaskRequest(_)
        | ClientRequest::UpdateTaskRequest(_) => true,
        ClientRequest::CustomRequest(custom) => {
            matches!(custom.method.as_str(), "tasks/result" | "tasks/list")
        }
        _ => false,
    }
}

/// The id of the task an answer started, in either revision's shape.
fn started_task(result: &ServerResult) -> Option<String> {
    match result {
        ServerResult::CreateTaskResult(created) => Some(created.task.task_id.clone()),
        ServerResult::CustomResult(custom) => custom
            .0
            .get(STOWED)
            .unwrap_or(&custom.0)
            .pointer("/task/taskId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

impl Server {
    /// Notes that the task `result` started, if it did, is `keeper`'s backend's.
    pub(super) fn note_task(&self, keeper: &Keeper, result: &ServerResult) {
        if let Some(task) = started_task(result)
            && let Ok(mut owners) = self.task_owners.lock()
        {
            owners.insert(task, keeper.backend.name.clone());
        }
    }

    /// A request about a task, sent to the backend whose task it is; `tasks/list` from all.
    pub(super) async fn about_a_task(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let task = match &request {
            ClientRequest::GetTaskRequest(r) => r.params.task_id.clone(),
            ClientRequest::CancelTaskRequest(r) => r.params.task_id.clone(),
            ClientRequest::UpdateTaskRequest(r) => r.params.task_id.clone(),
            ClientRequest::CustomRequest(custom) if custom.method == "tasks/list" => {
                return self.list_tasks(context).await;
            }
            ClientRequest::CustomRequest(custom) => custom
                .params
                .as_ref()
                .and_then(|p| p.get("taskId"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            other => {
                return Err(RequestError::Unsupported {
                    method: other.method().to_owned(),
                });
            }
        };
        let keeper = self.owner_of(&task).ok_or_else(|| {
            RequestError::InvalidParams(format!("unknown task: {}", untrusted_id(&task)))
        })?;
        self.send(&keeper, request, context).await
    }

    /// The backend of task `task`, as noted when it started.
    fn owner_of(&self, task: &str) -> Option<Arc<Keeper>> {
        let owners = self.task_owners.lock().ok()?;
        let name = owners.get(task)?;
        self.keepers
            .iter()
            .find(|k| &k.backend.name == name)
            .cloned()
    }

    /// Every backend's tasks, whole (2025-11-25's `tasks/list`), from the backends that list
    /// them; each task noted as its backend's.
    async fn list_tasks(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        let listing = self
            .keepers
            .iter()
            .filter(|keeper| lists_tasks(keeper))
            .map(|keeper| {
                let context = context.clone();
                async move { (keeper, self.tasks_of(keeper, context).await) }
            });
        let mut tasks = Vec::new();
        for (keeper, listed) in futures::future::join_all(listing).await {
            match listed {
                Ok(listed) => {
                    if let Ok(mut owners) = self.task_owners.lock() {
                        for id in listed.iter().filter_map(|t| t.get("taskId")?.as_str()) {
                            owners.insert(id.to_owned(), keeper.backend.name.clone());
                        }
                    }
                    tasks.extend(listed);
                }
                Err(e) => tracing::debug!(
                    "Backend '{}' did not list its tasks: {e}",
                    keeper.backend.name
                ),
            }
        }
        Ok(ServerResult::CustomResult(rmcp::model::CustomResult(
            json!({ STOWED: { "tasks": tasks } }),
        )))
    }

    /// One backend's tasks, every page.
    async fn tasks_of(
        &self,
        keeper: &Keeper,
        context: RequestContext<RoleServer>,
    ) -> Result<Vec<Value>, RequestError> {
        let mut tasks = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
            let request = ClientRequest::CustomRequest(CustomRequest::new("tasks/list", params));
            let answer = self.send(keeper, request, context.clone()).await?;
            let ServerResult::CustomResult(page) = answer else {
                break;
            };
            let page = page.0.get(STOWED).cloned().unwrap_or(page.0);
            if let Some(listed) = page.get("tasks").and_then(Value::as_array) {
                tasks.extend(listed.iter().cloned());
            }
            cursor = page
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(tasks)
    }
}

/// Whether `keeper`'s backend said it lists its tasks (2025-11-25 `capabilities.tasks.list`).
fn lists_tasks(keeper: &Keeper) -> bool {
    keeper.introduction().is_some_and(|info| {
        info.capabilities
            .experimental
            .as_ref()
            .and_then(|e| e.get(STOWED))
            .and_then(|stowed| stowed.get("tasks"))
            .and_then(|tasks| tasks.get("list"))
            .is_some()
    })
}

/// A task id from the client, fit for an error message.
fn untrusted_id(id: &str) -> String {
    crate::error_text::untrusted(id).chars().take(100).collect()
}
