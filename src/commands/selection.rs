//! The backends a command is about: those named on the command line, or every one when none
//! is named (`login tools`, `logout`) — with the token managers that sign in for them.

use std::sync::Arc;

use super::Outcome;
use crate::{
    auth::{
        self, Managers,
        browser::{Browser, SystemBrowser},
    },
    clients,
    config::{Backend, Settings},
};

/// A name on the command line that no backend of the configuration has.
#[derive(Debug, thiserror::Error)]
#[error("no backend named '{name}' (backends: {known})")]
pub struct UnknownBackend {
    /// The name given.
    pub name: String,
    /// The configuration's backends, by name: what the person may have meant.
    pub known: String,
}

/// The backends `names` name, in the order given; every backend when `names` is empty.
pub fn select<'a>(
    settings: &'a Settings,
    names: &[String],
) -> Result<Vec<&'a Backend>, UnknownBackend> {
    if names.is_empty() {
        return Ok(settings.backends.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            settings
                .backends
                .iter()
                .find(|b| b.name == *name)
                .ok_or_else(|| UnknownBackend {
                    name: name.clone(),
                    known: settings
                        .backends
                        .iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// What `login` and `logout` start from: the backends named (a usage error, said on stderr,
/// for a name the configuration does not have) and the managers of every profile, which may
/// ask a person to sign in in the system browser.
pub fn prepare<'a>(
    settings: &'a Settings,
    names: &[String],
) -> Result<(Vec<&'a Backend>, Managers), Outcome> {
    let selected = select(settings, names).map_err(|e| {
        eprintln!("authful-mcp-proxy: {e}");
        Outcome::UsageError
    })?;
    let browser: Arc<dyn Browser> = Arc::new(SystemBrowser);
    let managers = auth::managers(settings, &clients::identity_provider(), &browser);
    Ok((selected, managers))
}
