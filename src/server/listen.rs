//! `subscriptions/listen`: how a 2026-07-28 client hears of changes — one long request per
//! stream, acknowledged first, then every notification it asked for, tagged with the stream's
//! id (see [`crate::downstream::subscriptions`]), until the client cancels it, its input ends
//! or the proxy stops (then it is answered, so the client knows the end was graceful).
//!
//! List changes of every kind are accepted: the gateway announces each backend that comes or
//! goes. Resource updates are accepted for the URIs whose backend took the subscription
//! (`resources/subscribe`, sent to it as the older revision's clients would), and those
//! subscriptions are dropped again when the stream ends.

// The backends of the older revisions take resource subscriptions one URI at a time.
#![allow(deprecated)]

use rmcp::{
    RoleServer,
    model::{
        ClientRequest, NotificationMetaObject, ServerNotification, ServerResult, SubscribeRequest,
        SubscribeRequestParams, SubscriptionFilter, SubscriptionsAcknowledgedNotification,
        SubscriptionsAcknowledgedNotificationParams, SubscriptionsListenResult, UnsubscribeRequest,
        UnsubscribeRequestParams,
    },
    service::RequestContext,
};

use super::Server;
use crate::{downstream::subscriptions, request_error::RequestError};

impl Server {
    /// Serves one stream of `requested` notifications until the client or the proxy ends it.
    pub(super) async fn listen(
        &self,
        requested: SubscriptionFilter,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, RequestError> {
        self.begin_modern(&context).await?;
        let shared = self
            .shared
            .get()
            .ok_or_else(|| RequestError::internal("no session to listen in"))?;
        let mut subscribed = Vec::new();
        for uri in requested.resource_subscriptions.iter().flatten() {
            let subscribe = ClientRequest::SubscribeRequest(SubscribeRequest::new(
                SubscribeRequestParams::new(uri.clone()),
            ));
            match self.answer(subscribe, context.clone()).await {
                Ok(_) => subscribed.push(uri.clone()),
                Err(e) => tracing::debug!("No updates of a resource for the client's stream: {e}"),
            }
        }
        let accepted = subscriptions::accepted(&requested, subscribed.clone());
        let mut acknowledged = SubscriptionsAcknowledgedNotification::new(
            SubscriptionsAcknowledgedNotificationParams::new(accepted.clone()),
        );
        let mut meta = NotificationMetaObject::new();
        meta.set_subscription_id(context.id.clone());
        acknowledged.extensions.insert(meta);
        context
            .peer
            .send_notification(ServerNotification::SubscriptionsAcknowledgedNotification(
                acknowledged,
            ))
            .await
            .map_err(|e| RequestError::internal(format!("the client is gone: {e}")))?;
        {
            // Open only once acknowledged: nothing may come on a stream before that.
            let _open = shared
                .downstream
                .subscriptions
                .open(context.id.clone(), accepted);
            let mut input_ended = self.input_ended.clone();
            tokio::select! {
                () = context.ct.cancelled() => {}
                () = self.tasks.token().cancelled() => {}
                _ = input_ended.wait_for(|ended| *ended) => {}
            }
        }
        for uri in subscribed {
            let unsubscribe = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                UnsubscribeRequestParams::new(uri),
            ));
            let mut quiet = context.clone();
            quiet.ct = Default::default();
            let _ = self.answer(unsubscribe, quiet).await;
        }
        Ok(ServerResult::SubscriptionsListenResult(
            SubscriptionsListenResult::complete(context.id),
        ))
    }
}
