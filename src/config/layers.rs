//! Where the configuration comes from, and how its layers merge.
//!
//! Lowest first: built-in defaults < YAML file < the drop-in's env vars (`MCP_BACKEND_URL`,
//! `OIDC_*`) < `AUTHFUL_MCP_*` env vars (`__` nests) < command-line flags. The drop-in's env
//! vars and flags fill OIDC profile `default` and backend `default` (see
//! [`drop_in`](super::drop_in)), so the single-backend drop-in and the multi-backend file share
//! one model. The merge is resolved once; each finding then names the layer its value came
//! from: a line and column of the file, or the env var or flag.

use std::path::PathBuf;

use figment::{
    Figment,
    providers::{Env, Serialized},
};
use serde_json::Value as Json;

use super::{
    Config, ConfigError, Settings,
    drop_in::{DropInSettings, setting_at},
    finding::{Anchor, Finding, Origin},
    locate::{KeyPath, Segment},
    report::Diagnostics,
    resolve::resolve,
    validate::{self, FileLayer},
};

/// Prefix of the env vars that address any key of the model.
pub const ENV_PREFIX: &str = "AUTHFUL_MCP_";

/// Where configuration comes from, for one run.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// YAML file (`--config` / `AUTHFUL_MCP_CONFIG`).
    pub file: Option<PathBuf>,
    /// The drop-in's env vars.
    pub drop_in_env: DropInSettings,
    /// The drop-in's flags, as given on the command line.
    pub flags: DropInSettings,
}

/// The layers read and merged, before resolving.
struct Merged {
    file: Option<(String, FileLayer)>,
    config: Config,
    /// The `AUTHFUL_MCP_*` layer on its own, to tell which keys it set.
    env: Json,
}

impl Sources {
    /// The settings to run with, and the warnings; or every problem of every layer.
    pub fn settings(&self) -> Result<(Settings, Diagnostics), ConfigError> {
        let merged = self.merge()?;
        let (settings, diagnostics) = self.resolve(&merged, false);
        match settings {
            Some(settings) if !diagnostics.has_errors() => Ok((settings, diagnostics)),
            _ => Err(ConfigError::Diagnostics(diagnostics)),
        }
    }

    /// The merged configuration, refused with what `validate` would say of it (strings that
    /// lack an unset variable are only warned about): the start-up path up to resolving.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let merged = self.merge()?;
        match self.resolve(&merged, true) {
            (_, diagnostics) if diagnostics.has_errors() => {
                Err(ConfigError::Diagnostics(diagnostics))
            }
            _ => Ok(merged.config),
        }
    }

    fn merge(&self) -> Result<Merged, ConfigError> {
        let file = match &self.file {
            Some(path) => {
                let text = validate::read(path)?;
                let env = |name: &str| std::env::var(name).ok();
                let options = validate::Options {
                    strict: false,
                    env: &env,
                };
                Some((path.display().to_string(), FileLayer::read(&text, &options)))
            }
            None => None,
        };
        let mut figment = Figment::new();
        if let Some((_, layer)) = &file {
            figment = figment.merge(Serialized::defaults(&layer.tree));
        }
        let env_vars = || Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__");
        figment = figment
            .merge(Serialized::defaults(self.drop_in_env.layer()))
            .merge(env_vars())
            .merge(Serialized::defaults(self.flags.layer()));
        let env = Figment::from(env_vars())
            .extract::<Json>()
            .unwrap_or(Json::Null);
        match figment.extract::<Config>() {
            Ok(config) => Ok(Merged { file, config, env }),
            Err(error) => {
                let mut findings: Vec<(Finding, Origin)> = Vec::new();
                if let Some((_, layer)) = &file {
                    findings.extend(layer.findings.iter().map(|f| (f.clone(), Origin::File)));
                }
                findings.extend(error.into_iter().map(|e| {
                    let (finding, var) = env_finding(&e);
                    // A value of the wrong kind came from a flag or env var: say which.
                    match self.origin(&finding.path, &env) {
                        Origin::File => (finding, var),
                        origin => (finding, origin),
                    }
                }));
                Err(ConfigError::Diagnostics(self.place(&file, findings)))
            }
        }
    }

    /// Resolves the merge and places every finding; `as_validate` screens out what the file
    /// only warned about, as `validate` does.
    fn resolve(&self, merged: &Merged, as_validate: bool) -> (Option<Settings>, Diagnostics) {
        let resolved = resolve(&merged.config, merged.file.is_some());
        let mut findings: Vec<(Finding, Origin)> = Vec::new();
        let mut from_rules = resolved.findings;
        if let Some((_, layer)) = &merged.file {
            findings.extend(layer.findings.iter().map(|f| (f.clone(), Origin::File)));
            from_rules = layer.screen(from_rules, as_validate);
        }
        findings.extend(from_rules.into_iter().map(|f| {
            let origin = self.origin(&f.path, &merged.env);
            (f, origin)
        }));
        (resolved.settings, self.place(&merged.file, findings))
    }

    fn place(
        &self,
        file: &Option<(String, FileLayer)>,
        findings: Vec<(Finding, Origin)>,
    ) -> Diagnostics {
        let file = file
            .as_ref()
            .map(|(name, layer)| (name.as_str(), &layer.index));
        Diagnostics::place(file, findings)
    }

    /// The highest layer that sets the value at `path`; the file (or nowhere) otherwise.
    fn origin(&self, path: &KeyPath, env: &Json) -> Origin {
        if self.flags.sets(path)
            && let Some(setting) = setting_at(path)
        {
            return Origin::Flag(setting.flag_label());
        }
        if sets(env, path) {
            return Origin::Env(env_var(path));
        }
        if self.drop_in_env.sets(path)
            && let Some(env) = setting_at(path).and_then(|s| s.env)
        {
            return Origin::Env(env.to_owned());
        }
        Origin::File
    }
}

/// Whether `layer` holds a value (not a mapping of others) at `path`.
fn sets(layer: &Json, path: &KeyPath) -> bool {
    let mut node = layer;
    for segment in path.segments() {
        let next = match segment {
            Segment::Key(key) => node.get(key),
            Segment::Index(index) => node.get(index),
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    !node.is_null() && !node.is_object()
}

/// The `AUTHFUL_MCP_*` env var that sets `path`.
fn env_var(path: &KeyPath) -> String {
    let keys: Vec<String> = path
        .segments()
        .iter()
        .map(|segment| match segment {
            Segment::Key(key) => key.to_ascii_uppercase(),
            Segment::Index(index) => index.to_string(),
        })
        .collect();
    format!("{ENV_PREFIX}{}", keys.join("__"))
}

/// A value the `AUTHFUL_MCP_*` env vars set that does not fit the model (the other layers
/// were checked before the merge).
fn env_finding(error: &figment::Error) -> (Finding, Origin) {
    let mut path = KeyPath::root();
    for key in &error.path {
        path = path.key(key);
    }
    let var = match &error.kind {
        figment::error::Kind::UnknownField(field, _) => env_var(&path.key(field)),
        _ => env_var(&path),
    };
    let finding = Finding::error(path.clone(), Anchor::Key(path), error.kind.to_string());
    (finding, Origin::Env(var))
}
#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    use std::{path::PathBuf, time::Duration};

    use crate::config::{
        DEFAULT_REDIRECT_URL, Scopes,
        validate::{Options, check_text},
    };

    fn drop_in(url: &str) -> DropInSettings {
        DropInSettings::default()
            .with("backend_url", url)
            .with("oidc_issuer_url", "https://auth.example.com")
            .with("oidc_client_id", "cid")
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        figment::Jail::expect_with(|_| {
            let resolve = |backend: &str, issuer: &str| {
                let sources = Sources {
                    drop_in_env: drop_in(backend).with("oidc_issuer_url", issuer),
                    ..Sources::default()
                };
                sources.settings()
            };
            let refused = [
                (
                    "http://mcp.company.com/mcp",
                    "https://auth.example.com",
                    "backends.default.url",
                ),
                (
                    "https://mcp.company.com/mcp",
                    "http://auth.example.com",
                    "issuer_url",
                ),
            ];
            for (backend, issuer, key) in refused {
                let error = resolve(backend, issuer).unwrap_err().to_string();
                assert!(
                    error.contains(key) && error.contains("must use https://"),
                    "{error}"
                );
            }
            for (backend, issuer) in [
                (
                    "http://127.0.0.1:8000/mcp",
                    "http://localhost:8080/realms/x",
                ),
                ("http://[::1]:8000/mcp", "https://auth.example.com"),
            ] {
                assert!(resolve(backend, issuer).is_ok(), "{backend} {issuer}");
            }
            Ok(())
        });
    }

    #[test]
    fn drop_in_settings_make_one_unprefixed_backend_with_the_original_defaults() {
        // Inside a jail: other tests set AUTHFUL_MCP_* env vars.
        figment::Jail::expect_with(|_| {
            let sources = Sources {
                drop_in_env: drop_in("https://mcp.example.com/mcp"),
                ..Sources::default()
            };
            let (settings, _) = sources.settings().unwrap();
            let [backend] = settings.backends.as_slice() else {
                panic!("one backend expected")
            };
            assert_eq!(backend.prefix, None);
            let profile = backend.profile.as_ref().unwrap();
            assert_eq!(profile.scopes, ["openid", "profile", "email"]);
            assert_eq!(profile.redirect_url.as_str(), DEFAULT_REDIRECT_URL);
            assert_eq!(profile.login_timeout, Duration::from_secs(300));
            assert!(
                settings
                    .cache_dir
                    .ends_with(".fastmcp/oauth-mcp-client-cache")
            );
            Ok(())
        });
    }

    #[test]
    fn missing_settings_name_the_env_var_and_the_flag() {
        // Inside a jail: other tests set AUTHFUL_MCP_* env vars.
        figment::Jail::expect_with(|_| {
            let url = || DropInSettings::default().with("backend_url", "https://m/mcp");
            // Without an issuer the backend names it (RFC 9728): no finding.
            let without_issuer = Sources {
                drop_in_env: url().with("oidc_client_id", "cid"),
                ..Sources::default()
            };
            let (settings, _) = without_issuer.settings().unwrap();
            let profile = settings.backends[0].profile.as_ref().unwrap();
            assert_eq!(profile.issuer_url, None);
            // Without a client id the proxy registers itself there (RFC 7591): no finding;
            // a secret without one is.
            let registering = Sources {
                drop_in_env: url().with("oidc_issuer_url", "https://auth.example.com"),
                ..Sources::default()
            };
            let (settings, _) = registering.settings().unwrap();
            let profile = settings.backends[0].profile.as_ref().unwrap();
            assert_eq!(profile.client_id, None);
            let cases = [
                (DropInSettings::default(), "MCP_BACKEND_URL"),
                (
                    url()
                        .with("oidc_issuer_url", "https://auth.example.com")
                        .with("oidc_client_secret", "s3cret"),
                    "OIDC_CLIENT_ID",
                ),
            ];
            for (drop_in_env, expected) in cases {
                let sources = Sources {
                    drop_in_env,
                    ..Sources::default()
                };
                let err = sources.settings().unwrap_err().to_string();
                assert!(err.contains(expected), "{err}");
            }
            Ok(())
        });
    }

    #[test]
    fn redirect_url_must_be_loopback_http_with_a_port() {
        // Inside a jail: other tests set AUTHFUL_MCP_* env vars.
        figment::Jail::expect_with(|_| {
            for bad in [
                "https://localhost:8080/cb",
                "http://example.com:8080/cb",
                "http://localhost/cb",
            ] {
                let sources = Sources {
                    drop_in_env: drop_in("https://m/mcp").with("oidc_redirect_url", bad),
                    ..Sources::default()
                };
                let err = sources.settings().unwrap_err().to_string();
                assert!(err.contains("redirect_url"), "{bad}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_documented_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "oidc_profiles:\n  default:\n    issuer_url: https://file.example.com\n    \
                 client_id: from-file\n    scopes: [a]\n    redirect_url: http://127.0.0.1:1/cb\n\
                 backends:\n  default:\n    url: https://file.example.com/mcp\n    \
                 oidc_profile: default\n",
            )?;
            jail.set_env("AUTHFUL_MCP_OIDC_PROFILES__DEFAULT__CLIENT_ID", "12345");
            jail.set_env("AUTHFUL_MCP_CACHE_DIR", "/tmp/from-env");
            let sources = Sources {
                file: Some("c.yaml".into()),
                drop_in_env: DropInSettings::default()
                    .with("oidc_issuer_url", "https://seed.example.com")
                    .with("oidc_client_id", "from-seed")
                    .with("oidc_scopes", "b"),
                flags: DropInSettings::default().with("oidc_scopes", "c"),
            };
            let config = sources.load().unwrap();
            let p = &config.oidc_profiles["default"];
            assert_eq!(p.issuer_url.as_deref(), Some("https://seed.example.com"));
            assert_eq!(p.client_id.as_deref(), Some("12345"));
            assert_eq!(p.scopes, Some(Scopes::Text("c".into())));
            assert_eq!(p.redirect_url.as_deref(), Some("http://127.0.0.1:1/cb"));
            assert_eq!(config.cache_dir, Some(PathBuf::from("/tmp/from-env")));
            Ok(())
        });
    }

    /// No `Debug` of the configuration, as given or resolved, shows a client secret or a
    /// header value: a future log line cannot leak them.
    #[test]
    fn debug_output_never_shows_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "oidc_profiles:\n  corp:\n    issuer_url: https://auth.example.com\n    \
                 client_id: cid\n    client_secret: file-secret-123\nbackends:\n  api:\n    \
                 url: https://mcp.example.com/mcp\n    oidc_profile: corp\n    headers:\n      \
                 X-Api-Key: header-secret-456\n",
            )?;
            let sources = Sources {
                file: Some("c.yaml".into()),
                ..Sources::default()
            };
            let config = sources.load().unwrap();
            let settings = config.clone().resolve().unwrap();
            assert_eq!(
                settings.backends[0].headers[0].1.expose(),
                "header-secret-456"
            );
            let seed = DropInSettings::from_env(|name| {
                (name == "OIDC_CLIENT_SECRET").then(|| "seed-secret-789".to_owned())
            });
            let shown = format!("{seed:?} {config:?} {settings:?}");
            for secret in ["file-secret-123", "header-secret-456", "seed-secret-789"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.yaml", "backends:\n  a:\n    ulr: https://x/mcp\n")?;
            let sources = Sources {
                file: Some("c.yaml".into()),
                ..Sources::default()
            };
            let err = sources.load().unwrap_err().to_string();
            assert!(err.contains("ulr"), "{err}");
            Ok(())
        });
    }

    /// What the other layers set is not missing from the file: the drop-in's env vars may
    /// supply the only backend's URL and its profile. The file on its own has both problems.
    #[test]
    fn other_layers_fill_what_the_file_leaves_out() {
        figment::Jail::expect_with(|jail| {
            let text = "backends:\n  default:\n    oidc_profile: default\n";
            jail.create_file("c.yaml", text)?;
            let sources = Sources {
                file: Some("c.yaml".into()),
                drop_in_env: DropInSettings::default()
                    .with("backend_url", "https://m/mcp")
                    .with("oidc_issuer_url", "https://a")
                    .with("oidc_client_id", "c"),
                ..Sources::default()
            };
            let (_, warnings) = sources.settings().unwrap();
            assert_eq!(warnings.items, []);
            let alone = check_text(
                "c.yaml",
                text,
                &Options {
                    strict: false,
                    env: &|_| None,
                },
            );
            assert_eq!(alone.diagnostics.items.len(), 2, "{alone:?}");
            Ok(())
        });
    }
}
