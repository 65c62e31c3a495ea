//! Progress in order, and never after the answer.
//!
//! rmcp hands every incoming notification to a task of its own, so two progress notifications
//! of one request, or the last of them and the request's answer, can reach the stdio client in
//! any order. Clients mind: Cursor drops the connection when progress arrives for a request it
//! has already seen finish. This transport therefore takes a backend's progress notifications
//! out of the stream as they arrive, in the backend's order, and passes each one to the client
//! before it reads the next message; and when an answer arrives, it forgets that request's
//! progress mapping before rmcp sees the answer, so stragglers are dropped.

use std::borrow::Cow;

use futures::future::BoxFuture;
use rmcp::{
    Peer, RoleClient, RoleServer,
    model::{JsonRpcMessage, JsonRpcNotification, ProgressNotification, ServerNotification},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};

use crate::forward::ProgressMap;

/// A backend transport whose progress notifications reach `downstream` in order, before the
/// answer of their request.
pub struct Ordered<T> {
    inner: T,
    progress: ProgressMap,
    downstream: Peer<RoleServer>,
    /// A notification on its way to the client. rmcp polls `receive` in a `select!`, which may
    /// drop it half-way: the delivery lives here, so the next `receive` finishes it first.
    delivering: Option<BoxFuture<'static, ()>>,
}

impl<T> Ordered<T> {
    /// Wraps `inner`; progress tokens are mapped back through `progress` (the backend's
    /// backend-to-client map).
    pub fn new(inner: T, progress: ProgressMap, downstream: Peer<RoleServer>) -> Self {
        Self {
            inner,
            progress,
            downstream,
            delivering: None,
        }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Ordered<T> {
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            if let Some(delivery) = self.delivering.as_mut() {
                delivery.await;
                self.delivering = None;
            }
            let message = self.inner.receive().await?;
            match message {
                JsonRpcMessage::Notification(JsonRpcNotification {
                    notification: ServerNotification::ProgressNotification(progress),
                    ..
                }) => {
                    let Some(params) = self.progress.translate(progress.params) else {
                        continue;
                    };
                    let relayed =
                        ServerNotification::ProgressNotification(ProgressNotification::new(params));
                    let downstream = self.downstream.clone();
                    self.delivering = Some(Box::pin(async move {
                        if let Err(e) = downstream.send_notification(relayed).await {
                            tracing::debug!("Dropped a progress notification: {e}");
                        }
                    }));
                }
                JsonRpcMessage::Response(response) => {
                    self.progress.finish(&response.id);
                    return Some(JsonRpcMessage::Response(response));
                }
                JsonRpcMessage::Error(error) => {
                    if let Some(id) = &error.id {
                        self.progress.finish(id);
                    }
                    return Some(JsonRpcMessage::Error(error));
                }
                other => return Some(other),
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}
