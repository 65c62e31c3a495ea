//! The rules on cross-app access (SEP-990, `identity_assertion`): where the person's ID token
//! comes from and where it is exchanged, checked for each profile that sets it, and linked to
//! the profile it names once every profile is resolved.

use std::{collections::BTreeMap, sync::Arc};

use super::{Rules, entry};
use crate::config::{
    DEFAULT_REDIRECT_URL, Flow, IdentityAssertionConfig, OidcProfileConfig,
    locate::KeyPath,
    settings::{IdentityAssertion, Profile, expand_home},
};

/// What a profile's `identity_assertion` resolved to before the profiles are linked.
pub(super) enum Source {
    /// A file and an identity provider of its own: complete.
    Ready(IdentityAssertion),
    /// The sign-in of the profile of this name (and maybe a file).
    Profile {
        name: String,
        id_token_file: Option<std::path::PathBuf>,
    },
}

impl Rules {
    /// The `identity_assertion` of profile `name`, if set and valid.
    pub(super) fn identity_assertion(
        &mut self,
        name: &str,
        p: &OidcProfileConfig,
    ) -> Option<Source> {
        let config = p.identity_assertion.as_ref()?;
        let path = entry("oidc_profiles", name).key("identity_assertion");
        if p.issuer_url.is_none() || p.client_id.is_none() {
            self.bad_value(
                &path,
                "cross-app access needs the profile's issuer_url and client_id: the \
                 authorization server that takes the identity assertion grant, and the client \
                 registered there"
                    .to_owned(),
            );
        }
        if matches!(p.flow, Some(Flow::Device | Flow::ClientCredentials)) {
            self.bad_value(
                &entry("oidc_profiles", name).key("flow"),
                "a profile with identity_assertion gets its tokens by the exchange, not by a \
                 flow of its own; leave flow out"
                    .to_owned(),
            );
        }
        let id_token_file = config
            .id_token_file
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(|f| expand_home(std::path::Path::new(f)));
        match (&config.profile, &config.issuer_url) {
            (Some(profile), None) if config.client_id.is_none() => Some(Source::Profile {
                name: profile.trim().to_owned(),
                id_token_file,
            }),
            (None, Some(_)) => self.own_provider(&path, name, config, id_token_file),
            _ => {
                self.bad_value(
                    &path,
                    "name either the identity provider's profile (profile), or its issuer_url \
                     and client_id with an id_token_file"
                        .to_owned(),
                );
                None
            }
        }
    }

    /// An identity provider given inline, with the file of its ID token.
    fn own_provider(
        &mut self,
        path: &KeyPath,
        name: &str,
        config: &IdentityAssertionConfig,
        id_token_file: Option<std::path::PathBuf>,
    ) -> Option<Source> {
        let issuer = config.issuer_url.as_deref()?;
        let issuer_url = self.endpoint(&path.key("issuer_url"), issuer);
        let client_id = config
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        if client_id.is_none() {
            self.missing(path.key("client_id"));
        }
        if id_token_file.is_none() {
            self.missing(path.key("id_token_file"));
        }
        let (_, client_id, id_token_file) = (issuer_url?, client_id?, id_token_file?);
        let redirect = DEFAULT_REDIRECT_URL.parse().ok()?;
        let mut idp = Profile::new(
            &format!("{name} (identity provider)"),
            Some(issuer.trim()),
            client_id,
            redirect,
        );
        idp.client_secret = config
            .client_secret
            .clone()
            .filter(|s| !s.expose().is_empty());
        Some(Source::Ready(IdentityAssertion {
            idp: Arc::new(idp),
            id_token_file: Some(id_token_file),
        }))
    }

    /// Links each profile whose identity assertion names another profile to it: that profile
    /// must exist, sign in itself (not by an assertion of its own) and name its issuer.
    pub(super) fn link_identity_assertions(
        &mut self,
        profiles: &mut BTreeMap<&str, Option<Arc<Profile>>>,
        pending: Vec<(String, String, Option<std::path::PathBuf>)>,
    ) {
        for (name, idp_name, id_token_file) in pending {
            let path = entry("oidc_profiles", &name)
                .key("identity_assertion")
                .key("profile");
            let idp = match profiles.get(idp_name.as_str()) {
                None => {
                    self.bad_value(&path, format!("no OIDC profile named '{idp_name}'"));
                    continue;
                }
                // Its own errors were reported already.
                Some(None) => continue,
                Some(Some(idp)) => Arc::clone(idp),
            };
            if idp.identity_assertion.is_some() || idp.issuer_url.is_none() || idp_name == name {
                self.bad_value(
                    &path,
                    format!(
                        "profile '{idp_name}' cannot provide the ID token: it must sign in at an \
                         issuer_url of its own, not by an identity assertion"
                    ),
                );
                continue;
            }
            if let Some(Some(profile)) = profiles.get_mut(name.as_str()) {
                let mut linked = (**profile).clone();
                linked.identity_assertion = Some(IdentityAssertion { idp, id_token_file });
                *profile = Arc::new(linked);
            }
        }
    }
}
