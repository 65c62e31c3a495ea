//! The backends a command is about: those named on the command line, or every one when none
//! is named (`login tools`, `logout`).

use crate::config::{Backend, Settings};

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
