//! The token managers of a configuration: one per OIDC profile its backends use, shared by
//! all the backends of that profile, so that one sign-in serves them all.
//!
//! Each manager knows every backend of its profile, each with its resource indicator, and
//! the other configured backends, whose resources its own may not claim
//! ([`TokenManager::for_backends`]). Sign-ins of different profiles run side by side: a person
//! who needs half a minute for a login with MFA, or a device code nobody has entered yet, never
//! holds back another profile's login (nor, so, the backends waiting for it). Only browser
//! sign-ins whose redirect URLs share a port take turns, as only one of them can
//! listen there; each profile renews one at a time on its own ([`TokenManager`]). Commands
//! that only look (`status`) build the managers [non-interactive](non_interactive_managers):
//! no person is ever asked to sign in.

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::Mutex;

use super::{Access, AuthError, TokenManager, browser::Browser};
use crate::config::{Backend, Flow, Profile, Settings};

/// Each profile's token manager, by profile name.
pub type Managers = BTreeMap<String, Arc<TokenManager>>;

/// The managers of every profile in use in `settings`, which may ask a person to sign in
/// through `browser` (or a device code). They reach the providers with `http`.
pub fn managers(
    settings: &Settings,
    http: &reqwest::Client,
    browser: &Arc<dyn Browser>,
) -> Managers {
    build(settings, http, browser, true)
}

/// The same, never asking a person to sign in: tokens come from the cache, a refresh or the
/// client-credentials grant only (see [`TokenManager::non_interactive`]).
pub fn non_interactive_managers(
    settings: &Settings,
    http: &reqwest::Client,
    browser: &Arc<dyn Browser>,
) -> Managers {
    build(settings, http, browser, false)
}

/// `backend`'s way to the tokens of its profile: `None` for a backend without one; an error
/// for a backend these managers were not built for.
pub fn access(managers: &Managers, backend: &Backend) -> Result<Option<Access>, AuthError> {
    let Some(profile) = &backend.profile else {
        return Ok(None);
    };
    match managers.get(&profile.name) {
        Some(manager) => manager.access(&backend.name).map(Some),
        None => Err(AuthError::UnknownBackend {
            profile: profile.name.clone(),
            backend: backend.name.clone(),
            backends: "none: no manager was built for this profile".to_owned(),
        }),
    }
}

fn build(
    settings: &Settings,
    http: &reqwest::Client,
    browser: &Arc<dyn Browser>,
    interactive: bool,
) -> Managers {
    let mut gates = LoginGates::default();
    let mut managers = BTreeMap::new();
    for profile in settings.backends.iter().filter_map(|b| b.profile.as_ref()) {
        managers.entry(profile.name.clone()).or_insert_with(|| {
            let backends: Vec<&Backend> = settings
                .backends
                .iter()
                .filter(|b| b.profile.as_ref().is_some_and(|p| p.name == profile.name))
                .collect();
            let manager = TokenManager::new(
                Arc::clone(profile),
                &settings.cache_dir,
                http.clone(),
                Arc::clone(browser),
                gates.for_profile(profile),
            )
            .for_backends(&backends, &settings.backends);
            Arc::new(match interactive {
                true => manager,
                false => manager.non_interactive(),
            })
        });
    }
    managers
}

/// The gates sign-ins wait at: one per port browser sign-ins listen on. Every callback
/// listens on loopback, and `localhost` may stand for `127.0.0.1` and `::1` both, so the port
/// alone says which callbacks would collide.
#[derive(Default)]
struct LoginGates {
    by_port: BTreeMap<u16, Arc<Mutex<()>>>,
}

impl LoginGates {
    /// The gate of `profile`'s sign-ins: shared with the other browser profiles whose callback
    /// listens on the same port, else its own.
    fn for_profile(&mut self, profile: &Profile) -> Arc<Mutex<()>> {
        match (profile.flow, profile.redirect_url.port_or_known_default()) {
            (Flow::Browser, Some(port)) => Arc::clone(self.by_port.entry(port).or_default()),
            _ => Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use url::Url;

    use super::*;
    use crate::{
        auth::{AuthError, browser::SystemBrowser},
        config::Profile,
    };

    fn settings() -> Settings {
        let redirect = Url::parse("http://127.0.0.1:8080/auth/callback").unwrap();
        let profile = |name| {
            Some(Arc::new(Profile::new(
                name,
                Some("https://idp.example"),
                "client",
                redirect.clone(),
            )))
        };
        let (work, home) = (profile("work"), profile("home"));
        let backend = |name: &str, profile: &Option<Arc<Profile>>| {
            let url = Url::parse(&format!("https://{name}.example/mcp")).unwrap();
            Backend::new(name, url, profile.clone(), Some(name))
        };
        Settings {
            cache_dir: std::env::temp_dir(),
            mode: crate::config::Mode::Gateway,
            backends: vec![
                backend("mail", &home),
                backend("public", &None),
                backend("tickets", &work),
                backend("wiki", &work),
            ],
            gateway: Default::default(),
        }
    }

    #[test]
    fn backends_that_share_a_profile_share_its_manager() {
        let browser: Arc<dyn Browser> = Arc::new(SystemBrowser);
        let managers = managers(&settings(), &reqwest::Client::new(), &browser);
        assert_eq!(
            managers.keys().collect::<Vec<_>>(),
            ["home", "work"],
            "one per profile in use"
        );
        let work = &managers["work"];
        assert!(work.interactive);
        for backend in ["tickets", "wiki"] {
            assert_eq!(work.access(backend).unwrap().backend(), backend);
        }
        assert!(matches!(
            work.access("mail"),
            Err(AuthError::UnknownBackend { .. })
        ));
    }

    #[test]
    fn non_interactive_managers_never_ask_a_person() {
        let browser: Arc<dyn Browser> = Arc::new(SystemBrowser);
        let managers = non_interactive_managers(&settings(), &reqwest::Client::new(), &browser);
        assert_eq!(managers.len(), 2);
        assert!(managers.values().all(|m| !m.interactive));
    }

    #[test]
    fn only_browser_sign_ins_on_one_address_take_turns() {
        let profile = |name, redirect: &str, flow| Profile {
            flow,
            ..Profile::new(name, None, "client", Url::parse(redirect).unwrap())
        };
        let mut gates = LoginGates::default();
        let mut gate = |name, redirect, flow| gates.for_profile(&profile(name, redirect, flow));
        let work = gate("work", "http://127.0.0.1:8080/auth/callback", Flow::Browser);
        let home = gate("home", "http://127.0.0.1:8080/other", Flow::Browser);
        let lab = gate("lab", "http://127.0.0.1:8081/auth/callback", Flow::Browser);
        let local = gate(
            "local",
            "http://localhost:8080/auth/callback",
            Flow::Browser,
        );
        let tv = gate("tv", "http://127.0.0.1:8080/auth/callback", Flow::Device);
        let ci = gate(
            "ci",
            "http://127.0.0.1:8080/auth/callback",
            Flow::ClientCredentials,
        );
        assert!(
            Arc::ptr_eq(&work, &home),
            "one port, one listener at a time"
        );
        assert!(Arc::ptr_eq(&work, &local), "localhost may be 127.0.0.1");
        for other in [&lab, &tv, &ci] {
            assert!(!Arc::ptr_eq(&work, other));
        }
        assert!(!Arc::ptr_eq(&tv, &ci));
    }
}
