//! The merged catalog: every backend's lists merged into one complete list per kind, and the
//! routes from exposed tool and prompt names back to their backend.
//!
//! The lists themselves live in the keepers, read whole from each backend (see [`Keeper`]); a
//! merge happens only when one of them, or a backend's status, changed since the last one.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use super::keeper::Keeper;
use crate::{
    lists::{Item, Kind, Lists},
    naming::Naming,
};

/// The keeper index of the gateway's own tools in [`Route::keeper`].
pub const GATEWAY: usize = usize::MAX;

/// Where an exposed tool or prompt lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the backend's keeper.
    pub keeper: usize,
    /// The backend's own name for it.
    pub original: String,
}

/// Exposed names seen in lists, so calls find their backend (also for shortened names).
#[derive(Default)]
pub struct Routes {
    tools: std::sync::Mutex<HashMap<String, Route>>,
    prompts: std::sync::Mutex<HashMap<String, Route>>,
}

impl Routes {
    fn table(&self, kind: Kind) -> Option<&std::sync::Mutex<HashMap<String, Route>>> {
        match kind {
            Kind::Tools => Some(&self.tools),
            Kind::Prompts => Some(&self.prompts),
            Kind::Resources | Kind::Templates => None,
        }
    }

    /// The route of an exposed name, if it has been listed.
    pub fn get(&self, kind: Kind, exposed: &str) -> Option<Route> {
        self.table(kind)?.lock().ok()?.get(exposed).cloned()
    }

    /// Records a route; `false` when another item already owns the exposed name: one of
    /// another backend, or another of this backend's own (a shortened name can equal a
    /// 64-character name the backend also has). The first to be listed keeps the name.
    fn claim(&self, kind: Kind, exposed: &str, route: Route) -> bool {
        let Some(Ok(mut table)) = self.table(kind).map(|t| t.lock()) else {
            return true;
        };
        match table.get(exposed) {
            Some(existing) => *existing == route,
            None => {
                table.insert(exposed.to_owned(), route);
                true
            }
        }
    }
}

/// The keeper that serves an exposed resource URI, with the backend's own URI: the prefixed
/// backend whose `{prefix}+` starts it, otherwise the first unprefixed backend. URIs are
/// routed by their shape (templates cannot be looked up in a table), so a prefixed backend
/// wins over an unprefixed one whose URI happens to start with its `{prefix}+`.
pub fn uri_owner<'a>(keepers: &[Arc<Keeper>], exposed: &'a str) -> Option<(usize, &'a str)> {
    keepers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.backend.prefix.is_some())
        .find_map(|(i, s)| s.naming.original_uri(exposed).map(|o| (i, o)))
        .or_else(|| {
            keepers
                .iter()
                .position(|s| s.backend.prefix.is_none())
                .map(|i| (i, exposed))
        })
}

/// Exposes one item of the backend in `keepers[index]` under the gateway's names; `None` hides
/// it.
fn expose<T: Exposed>(
    index: usize,
    keepers: &[Arc<Keeper>],
    routes: &Routes,
    item: &T,
) -> Option<T> {
    let kind = T::KIND;
    let keeper = keepers.get(index)?;
    let naming = &keeper.naming;
    let original = item.key();
    let exposed = match kind {
        Kind::Tools => {
            if !keeper.backend.tools.allows(original) {
                return None;
            }
            match naming.tool(original) {
                Ok(name) => name,
                Err(invalid) => {
                    tracing::warn!("Skipping {}", invalid.0);
                    return None;
                }
            }
        }
        Kind::Prompts => naming.prompt(original),
        Kind::Resources | Kind::Templates => {
            let exposed = naming.uri(original);
            // Listed only if reading it reaches this backend: an unprefixed backend's
            // `tools+x` is read from backend `tools`, so listing it here would mislead.
            if uri_owner(keepers, &exposed).map(|(i, _)| i) != Some(index) {
                tracing::warn!(
                    "Skipping {} '{original}' of backend '{}': '{exposed}' belongs to another \
                     backend's URIs",
                    kind.items(),
                    keeper.backend.name
                );
                return None;
            }
            exposed
        }
    };
    if let Some(other) = naming.poses_as(&exposed) {
        tracing::warn!(
            "Skipping {} '{original}' of unprefixed backend '{}': its name poses as one of the \
             backend with prefix '{other}'",
            kind.items(),
            keeper.backend.name
        );
        return None;
    }
    let route = Route {
        keeper: index,
        original: original.to_owned(),
    };
    if !routes.claim(kind, &exposed, route) {
        tracing::warn!(
            "Skipping {} '{original}' of backend '{}': '{exposed}' is already taken by another \
             {} (the first one listed keeps a name)",
            kind.items(),
            keeper.backend.name,
            match kind {
                Kind::Prompts => "prompt",
                _ => "tool",
            }
        );
        return None;
    }
    let mut item = item.clone();
    item.set_key(exposed);
    item.rewrite_links(naming);
    Some(item)
}

/// An item as the gateway exposes it: under its exposed name or URI, and with the links it
/// carries pointing at exposed URIs too.
pub trait Exposed: Item {
    /// Points the resource links it carries at their exposed URIs.
    fn rewrite_links(&mut self, _naming: &Naming) {}
}

impl Exposed for Tool {
    fn rewrite_links(&mut self, naming: &Naming) {
        if let Some(meta) = &mut self.meta {
            naming.rewrite_tool_meta(meta);
        }
    }
}

impl Exposed for Prompt {}
impl Exposed for Resource {}
impl Exposed for ResourceTemplate {}

/// The merged lists, and the routes their names claimed.
#[derive(Default)]
pub struct Catalog {
    routes: Routes,
    /// Bumped by every keeper on any change of its lists or status.
    version: Arc<AtomicU64>,
    /// Each kind's last merge, with the version it was made at.
    merged: Mutex<(Lists, [Option<u64>; 4])>,
}

impl Catalog {
    /// The change counter the keepers bump.
    pub fn version(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.version)
    }

    /// Keeps `names` for the gateway's own tools, before any backend can claim them.
    pub fn reserve(&self, names: &[&str]) {
        for name in names {
            let route = Route {
                keeper: GATEWAY,
                original: (*name).to_owned(),
            };
            self.routes.claim(Kind::Tools, name, route);
        }
    }

    /// Every connected backend's items of `T`'s list, in backend order, each under its
    /// exposed name; items whose name is taken are left out. Merged again only after a change.
    pub fn list<T: Exposed>(&self, keepers: &[Arc<Keeper>]) -> Arc<Vec<T>> {
        // Read the version first: a change during the merge leaves the result out of date.
        let version = self.version.load(Ordering::SeqCst);
        if let Ok(merged) = self.merged.lock()
            && merged.1[T::KIND.index()] == Some(version)
            && let Some(list) = T::of(&merged.0)
        {
            return Arc::clone(list);
        }
        let mut items = Vec::new();
        for (index, keeper) in keepers.iter().enumerate() {
            if let Some(listed) = keeper.listed::<T>() {
                items.extend(
                    listed
                        .iter()
                        .filter_map(|item| expose(index, keepers, &self.routes, item)),
                );
            }
        }
        let list = Arc::new(items);
        if let Ok(mut merged) = self.merged.lock() {
            *T::of_mut(&mut merged.0) = Some(Arc::clone(&list));
            merged.1[T::KIND.index()] = Some(version);
        }
        list
    }

    /// Where an exposed tool or prompt lives, as the current lists say.
    pub fn route(&self, kind: Kind, keepers: &[Arc<Keeper>], exposed: &str) -> Option<Route> {
        if let Some(route) = self.routes.get(kind, exposed) {
            return Some(route);
        }
        // A name from a list not merged yet (a client that calls without listing again).
        match kind {
            Kind::Tools => drop(self.list::<Tool>(keepers)),
            Kind::Prompts => drop(self.list::<Prompt>(keepers)),
            Kind::Resources | Kind::Templates => return None,
        }
        self.routes.get(kind, exposed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_belongs_to_the_first_backend_that_lists_it() {
        let routes = Routes::default();
        let route = |keeper| Route {
            keeper,
            original: "x".into(),
        };
        assert!(routes.claim(Kind::Tools, "x", route(0)));
        assert!(routes.claim(Kind::Tools, "x", route(0)));
        assert!(!routes.claim(Kind::Tools, "x", route(1)));
        assert_eq!(routes.get(Kind::Tools, "x"), Some(route(0)));
    }

    fn keeper(name: &str, prefix: Option<&str>) -> Arc<Keeper> {
        let url = url::Url::parse("http://127.0.0.1:1/mcp").unwrap();
        let backend = crate::config::Backend::new(name, url, None, prefix);
        let naming = crate::naming::Naming::new(name, prefix, "_");
        Arc::new(Keeper::new(
            backend,
            crate::config::Mode::Gateway,
            naming,
            None,
            Arc::default(),
            None,
        ))
    }

    /// Found by `tests/it/properties/catalog.rs`: an unprefixed backend's resource
    /// `tools+mem://x` was listed, but reading it went to backend `tools` (as `mem://x`).
    #[test]
    fn a_resource_is_listed_only_where_reading_it_leads() {
        let keepers = [keeper("tools", Some("tools")), keeper("plain", None)];
        assert_eq!(uri_owner(&keepers, "tools+mem://x"), Some((0, "mem://x")));
        assert_eq!(uri_owner(&keepers, "mem://y"), Some((1, "mem://y")));
        let routes = Routes::default();
        let listed = |index, uri: &str| {
            expose(index, &keepers, &routes, &Resource::new(uri, "r")).map(|item| item.uri)
        };
        assert_eq!(listed(0, "mem://x").as_deref(), Some("tools+mem://x"));
        assert_eq!(listed(1, "mem://y").as_deref(), Some("mem://y"));
        assert_eq!(listed(1, "tools+mem://x"), None);
        // A second unprefixed backend's URIs would all be read from the first one.
        let keepers = [keeper("a", None), keeper("b", None)];
        assert_eq!(uri_owner(&keepers, "mem://y"), Some((0, "mem://y")));
        let template = ResourceTemplate::new("mem://{id}", "t");
        assert!(expose(1, &keepers, &routes, &template).is_none());
    }

    /// Found by `tests/it/properties/catalog.rs`: a backend listing a tool with a name longer
    /// than the limit and also the tool whose name is that name's shortened form had both
    /// exposed under one name, and calls went to whichever was listed last.
    #[test]
    fn a_shortened_name_is_not_taken_over_by_another_tool_of_the_same_backend() {
        let naming = crate::naming::Naming::new("b", None, "_");
        let long = "a".repeat(70);
        let shortened = naming.tool(&long).unwrap();
        assert_eq!(naming.tool(&shortened).unwrap(), shortened);
        let routes = Routes::default();
        let route = |original: &str| Route {
            keeper: 0,
            original: original.into(),
        };
        assert!(routes.claim(Kind::Tools, &shortened, route(&long)));
        assert!(!routes.claim(Kind::Tools, &shortened, route(&shortened)));
        // Listing again keeps the name where it is.
        assert!(routes.claim(Kind::Tools, &shortened, route(&long)));
        assert_eq!(routes.get(Kind::Tools, &shortened), Some(route(&long)));
    }
}
