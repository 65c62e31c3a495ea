//! A modern client's `subscriptions/listen` streams. On stdio they share the one channel, so
//! each notification carries the id of the stream it belongs to
//! (`io.modelcontextprotocol/subscriptionId`), and goes to every stream that asked for its kind —
//! and to no other: a 2026-07-28 server never sends what was not asked for.

use std::sync::Mutex;

use rmcp::{
    Peer, RoleServer,
    model::{GetMeta, RequestId, ServerNotification, SubscriptionFilter},
};

/// The open streams.
#[derive(Default)]
pub struct Subscriptions {
    open: Mutex<Vec<(RequestId, SubscriptionFilter)>>,
}

/// An open stream; it closes when dropped.
pub struct Open<'a> {
    subscriptions: &'a Subscriptions,
    id: RequestId,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if let Ok(mut open) = self.subscriptions.open.lock() {
            open.retain(|(id, _)| *id != self.id);
        }
    }
}

impl Subscriptions {
    /// Opens the stream of the `subscriptions/listen` request `id` for what `filter` accepts.
    pub fn open(&self, id: RequestId, filter: SubscriptionFilter) -> Open<'_> {
        if let Ok(mut open) = self.open.lock() {
            open.push((id.clone(), filter));
        }
        Open {
            subscriptions: self,
            id,
        }
    }

    /// The streams that asked for `notification`.
    fn wanting(&self, notification: &ServerNotification) -> Vec<RequestId> {
        let Ok(open) = self.open.lock() else {
            return Vec::new();
        };
        open.iter()
            .filter(|(_, filter)| wants(filter, notification))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Sends `notification` on every stream that asked for it; `true` when there was one.
    pub async fn deliver(&self, peer: &Peer<RoleServer>, notification: ServerNotification) -> bool {
        let streams = self.wanting(&notification);
        for id in &streams {
            let mut tagged = notification.clone();
            tagged.get_meta_mut().set_subscription_id(id.clone());
            let _ = peer.send_notification(tagged).await;
        }
        !streams.is_empty()
    }
}

/// Whether a stream with `filter` asked for `notification`.
fn wants(filter: &SubscriptionFilter, notification: &ServerNotification) -> bool {
    let yes = |asked: Option<bool>| asked == Some(true);
    match notification {
        ServerNotification::ToolListChangedNotification(_) => yes(filter.tools_list_changed),
        ServerNotification::PromptListChangedNotification(_) => yes(filter.prompts_list_changed),
        ServerNotification::ResourceListChangedNotification(_) => {
            yes(filter.resources_list_changed)
        }
        ServerNotification::ResourceUpdatedNotification(updated) => filter
            .resource_subscriptions
            .as_ref()
            .is_some_and(|uris| uris.contains(&updated.params.uri)),
        _ => false,
    }
}

/// What a stream of `requested` gets: list changes of every kind, and updates of the resources
/// `subscribed` (those a backend took the subscription for).
pub fn accepted(requested: &SubscriptionFilter, subscribed: Vec<String>) -> SubscriptionFilter {
    let mut accepted = SubscriptionFilter::default();
    accepted.tools_list_changed = requested.tools_list_changed.filter(|&b| b);
    accepted.prompts_list_changed = requested.prompts_list_changed.filter(|&b| b);
    accepted.resources_list_changed = requested.resources_list_changed.filter(|&b| b);
    if requested.resource_subscriptions.is_some() {
        accepted.resource_subscriptions = Some(subscribed);
    }
    accepted
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ResourceUpdatedNotification, ResourceUpdatedNotificationParam};

    use super::*;

    fn updated(uri: &str) -> ServerNotification {
        ServerNotification::ResourceUpdatedNotification(ResourceUpdatedNotification::new(
            ResourceUpdatedNotificationParam::new(uri),
        ))
    }

    /// Each stream gets the kinds it asked for, and only those; closing a stream stops it.
    #[test]
    fn streams_get_only_what_they_asked_for() {
        let subscriptions = Subscriptions::default();
        let mut tools = SubscriptionFilter::default();
        tools.tools_list_changed = Some(true);
        let mut file = SubscriptionFilter::default();
        file.resource_subscriptions = Some(vec!["file:///a".into()]);
        let first = subscriptions.open(RequestId::Number(1), tools);
        let _second = subscriptions.open(RequestId::Number(2), file);
        let changed = ServerNotification::ToolListChangedNotification(Default::default());
        assert_eq!(subscriptions.wanting(&changed), vec![RequestId::Number(1)]);
        assert_eq!(
            subscriptions.wanting(&updated("file:///a")),
            vec![RequestId::Number(2)]
        );
        assert!(subscriptions.wanting(&updated("file:///b")).is_empty());
        let prompts = ServerNotification::PromptListChangedNotification(Default::default());
        assert!(subscriptions.wanting(&prompts).is_empty());
        drop(first);
        assert!(subscriptions.wanting(&changed).is_empty());
    }
}
