//! The token managers of a configuration: one per OIDC profile its backends use, shared by
//! all the backends of that profile, so that one sign-in serves them all.
//!
//! Each manager knows every backend of its profile, each with its resource indicator, and
//! the other configured backends, whose resources its own may not claim
//! ([`TokenManager::for_backends`]). The managers of one configuration share one login gate:
//! one sign-in at a time, whatever the profile, so that a person never faces two browser
//! tabs or device codes at once. Commands that only look (`status`) build them
//! [non-interactive](non_interactive_managers): no person is ever asked to sign in.

use std::{collections::BTreeMap, sync::Arc};

use super::{Access, AuthError, TokenManager, browser::Browser};
use crate::config::{Backend, Settings};

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
    let login_gate = Arc::default();
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
                Arc::clone(&login_gate),
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
}
