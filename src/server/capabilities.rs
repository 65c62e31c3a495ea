//! What the gateway says of itself in `initialize`: the union of its backends' capabilities,
//! as they said them when they connected, now or in the last run (see
//! [`remembered`](crate::remembered)) — every list offered while some backend's are unknown —
//! and each backend's instructions under its own heading.

use rmcp::model::ServerCapabilities;
use serde_json::{Value, json};

use super::{Server, convert, to_json};
use crate::{config::FallbackTools, request_error::RequestError};

impl Server {
    /// The union of the backends' capabilities, now or as remembered. While some backend's are
    /// unknown, every list is offered; lists always announce changes,
    /// since backends come and go.
    pub(super) fn capabilities(&self) -> Result<ServerCapabilities, RequestError> {
        let mut union = serde_json::Map::new();
        let mut all_ready = true;
        for keeper in &self.keepers {
            let Some(info) = keeper.introduction() else {
                all_ready = false;
                continue;
            };
            if let Value::Object(caps) = to_json(&info.capabilities)? {
                for (key, value) in caps {
                    merge(union.entry(key).or_insert(json!({})), value);
                }
            }
        }
        if !all_ready || self.settings.fallback_tools == FallbackTools::Always {
            union.entry("tools").or_insert(json!({}));
        }
        if !all_ready {
            for key in ["prompts", "resources", "logging", "completions"] {
                union.entry(key).or_insert(json!({}));
            }
            union["resources"]["subscribe"] = json!(true);
        }
        for key in ["tools", "prompts", "resources"] {
            if let Some(Value::Object(cap)) = union.get_mut(key) {
                cap.insert("listChanged".into(), json!(true));
            }
        }
        convert(Value::Object(union))
    }

    /// Each backend's instructions (now or as remembered) under its own heading.
    pub(super) fn instructions(&self) -> Option<String> {
        let sections: Vec<String> = self
            .keepers
            .iter()
            .filter_map(|keeper| {
                let info = keeper.introduction()?;
                let text = info.instructions.as_deref()?.trim();
                (!text.is_empty()).then(|| format!("## {}\n\n{text}", keeper.backend.name))
            })
            .collect();
        (!sections.is_empty()).then(|| sections.join("\n\n"))
    }
}

/// Merges one backend's capability into the union: objects key by key, `true` wins.
fn merge(into: &mut Value, value: Value) {
    match (into, value) {
        (Value::Object(into), Value::Object(value)) => {
            for (key, v) in value {
                match into.get_mut(&key) {
                    Some(existing) => merge(existing, v),
                    None => {
                        into.insert(key, v);
                    }
                }
            }
        }
        (into @ Value::Bool(false), v @ Value::Bool(true)) => *into = v,
        _ => {}
    }
}
