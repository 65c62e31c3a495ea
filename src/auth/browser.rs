//! Opening the authorization URL: the user's browser, or a stand-in in tests.

/// Something that can show the user a URL to log in with.
pub trait Browser: Send + Sync {
    /// Opens `url`. An error is reported but does not stop the login: the URL is also printed.
    fn open(&self, url: &str) -> Result<(), String>;

    /// Shows `url` with `message` to the person through the MCP client, if it can (a device
    /// code's page, or a login URL the proxy was told not to open itself); `true` if it did.
    /// Blocks briefly: call it on a blocking thread.
    fn show(&self, _url: &str, _message: &str) -> bool {
        false
    }
}

/// The system browser through the `webbrowser` crate, which honours `$BROWSER`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemBrowser;

/// Terminal browsers that `webbrowser` runs in the foreground with our stdin and stdout: they
/// would read the client's JSON-RPC and write into the replies.
const TEXT_BROWSERS: &[&str] = &[
    "lynx", "links", "links2", "elinks", "w3m", "eww", "netrik", "retawq", "curl",
];

/// The first text browser named in a `$BROWSER` value (a `:`-separated list of commands).
fn text_browser(browser_env: &str) -> Option<&str> {
    browser_env.split(':').find_map(|entry| {
        let command = entry.split_whitespace().next()?;
        let name = command.rsplit('/').next()?;
        TEXT_BROWSERS.contains(&name).then_some(name)
    })
}

impl Browser for SystemBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        if let Some(name) = std::env::var("BROWSER")
            .ok()
            .as_deref()
            .and_then(text_browser)
        {
            return Err(format!(
                "BROWSER names the terminal browser '{name}', which cannot run while stdin and \
                 stdout carry MCP"
            ));
        }
        webbrowser::open(url).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_browsers_are_recognised_in_browser_lists() {
        assert_eq!(text_browser("/usr/bin/w3m"), Some("w3m"));
        assert_eq!(text_browser("firefox:lynx -dump %s"), Some("lynx"));
        assert_eq!(text_browser("firefox"), None);
        assert_eq!(text_browser("/opt/scripts/open-curlish.sh"), None);
    }
}
