//! Opening the authorization URL: the user's browser, or a stand-in in tests.

/// Something that can show the user a URL to log in with.
pub trait Browser: Send + Sync {
    /// Opens `url`. An error is reported but does not stop the login: the URL is also printed.
    fn open(&self, url: &str) -> Result<(), String>;
}

/// The system browser through the `webbrowser` crate, which honours `$BROWSER`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemBrowser;

impl Browser for SystemBrowser {
    fn open(&self, url: &str) -> Result<(), String> {
        webbrowser::open(url).map_err(|e| e.to_string())
    }
}
