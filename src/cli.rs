//! The command line: flags and env vars in the Python original's names, logging, banner, exit codes; and
//! the `validate` and `schema` subcommands.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::{
    Arg, ArgMatches, Args, CommandFactory, Parser, Subcommand,
    builder::{PossibleValuesParser, TypedValueParser},
};

use crate::{
    account,
    auth::browser::SystemBrowser,
    config::{
        ConfigError, DropInSettings, Format, Settings, Sources,
        drop_in::{self, Kind},
        json_schema_text, validate,
    },
    error_text::printable,
    logging::{self, Verbosity},
    proxy, standard_streams,
};

/// Lets desktop MCP clients use remote MCP servers that validate OIDC bearer tokens: logs you
/// in with your identity provider and relays MCP between stdio and Streamable HTTP.
///
/// Without a subcommand it runs the proxy: `authful-mcp-proxy [OPTIONS] [MCP_BACKEND_URL]`.
#[derive(Debug, Parser)]
#[command(name = "authful-mcp-proxy", version)]
pub struct Cli {
    /// Something other than running the proxy
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The drop-in's settings, as [`drop_in::SETTINGS`] defines them
    #[command(flatten)]
    pub drop_in: DropInFlags,
    /// YAML configuration file
    #[arg(
        short = 'c',
        long,
        value_name = "PATH",
        env = "AUTHFUL_MCP_CONFIG",
        global = true
    )]
    pub config: Option<PathBuf>,
    /// Append log lines to this file instead of stderr
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Don't show the banner on stderr at start
    #[arg(long)]
    pub no_banner: bool,
    /// Log errors only
    #[arg(long, conflicts_with_all = ["debug", "log_content"])]
    pub silent: bool,
    /// Log debug details: each step, and of each MCP message what it is and its size, never
    /// what it says, nor tokens or secrets [env: MCP_PROXY_DEBUG]
    #[arg(long)]
    pub debug: bool,
    /// Log debug details and whole MCP messages, which may be confidential: arguments,
    /// results, notifications, error messages (implies --debug; never tokens or secrets)
    /// [env: MCP_PROXY_LOG_CONTENT]
    #[arg(long)]
    pub log_content: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a configuration file and report every problem at once. Exit status: 0 valid
    /// (warnings allowed), 1 invalid, 2 unreadable file or usage error
    Validate(ValidateArgs),
    /// Print the JSON Schema of the configuration file
    Schema,
    /// Sign in ahead of time for these backends (all by default), one sign-in per profile.
    /// Exit status: 0 when every profile asked for holds a usable token, 1 when a sign-in
    /// failed, 2 for a usage or configuration error
    Login(BackendArgs),
    /// Forget the cached tokens of these backends' profiles (all by default), revoking the
    /// refresh token at the provider where it offers revocation. Exit status: 0 done, 1 a
    /// revocation or deletion failed, 2 usage or configuration error
    Logout(LogoutArgs),
    /// Show each backend's profile, issuer, token and scopes, and whether it answers with the
    /// token; never opens a browser. Exit status: 0 every backend answers, 1 some does not, 2
    /// usage or configuration error
    Status(StatusArgs),
}

/// Arguments of `login`.
#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Backends by their name in the configuration (the drop-in's is `default`)
    #[arg(value_name = "BACKEND")]
    pub backends: Vec<String>,
}

/// Arguments of `logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Backends by their name in the configuration
    #[arg(value_name = "BACKEND")]
    pub backends: Vec<String>,
    /// Also remove the token files of profiles no longer in the configuration
    #[arg(long)]
    pub all: bool,
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Output format
    #[arg(long, default_value = "human", value_parser = format_parser())]
    pub format: Format,
    /// Treat warnings (unset ${VAR} without default) as errors
    #[arg(long)]
    pub strict: bool,
    /// The file to check [default: --config / AUTHFUL_MCP_CONFIG]
    #[arg(value_name = "CONFIG")]
    pub file: Option<PathBuf>,
}

fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    PossibleValuesParser::new(Format::NAMES).try_map(|name| name.parse::<Format>())
}

/// The drop-in's flags: one argument per entry of [`drop_in::SETTINGS`], which also gives
/// each its help (env var and default included).
#[derive(Debug, Clone, Default)]
pub struct DropInFlags(pub DropInSettings);

impl Args for DropInFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        drop_in::SETTINGS.iter().fold(command, |command, setting| {
            let mut arg = Arg::new(setting.id)
                .value_name(setting.value_name)
                .help(setting.help_text());
            if let Some(flag) = setting.flag {
                // Global: `login`, `logout` and `status` take them like the proxy.
                arg = arg.long(flag).global(true);
            }
            if setting.kind == Kind::Seconds {
                // Checked here so that `--login-timeout soon` is a usage error.
                arg = arg.value_parser(clap::value_parser!(u64).map(|n| n.to_string()));
            }
            command.arg(arg)
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for DropInFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let settings =
            drop_in::SETTINGS
                .iter()
                .fold(DropInSettings::default(), |settings, setting| match matches
                    .get_one::<String>(setting.id)
                {
                    Some(value) => settings.with(setting.id, value.clone()),
                    None => settings,
                });
        Ok(Self(settings))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

fn truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl Cli {
    /// `--silent` wins over the env vars; content logging implies debug logging, so that
    /// setting only `MCP_PROXY_LOG_CONTENT` (in a client's configuration, say) is not silently
    /// without effect.
    fn verbosity(&self) -> Verbosity {
        if self.silent {
            Verbosity::Silent
        } else if self.log_content || truthy(std::env::var("MCP_PROXY_LOG_CONTENT").ok()) {
            Verbosity::Content
        } else if self.debug || truthy(std::env::var("MCP_PROXY_DEBUG").ok()) {
            Verbosity::Debug
        } else {
            Verbosity::Normal
        }
    }

    fn sources(&self) -> Sources {
        Sources {
            file: self.config.clone(),
            drop_in_env: DropInSettings::from_env(|name| std::env::var(name).ok()),
            flags: self.drop_in.0.clone(),
        }
    }
}

fn banner(settings: &Settings) {
    eprintln!(
        "authful-mcp-proxy {} - OIDC login for remote MCP servers",
        env!("CARGO_PKG_VERSION")
    );
    if let [backend] = settings.backends.as_slice()
        && settings.mode == crate::config::Mode::DropIn
    {
        eprintln!("  backend  {}", backend.url);
        if let Some(profile) = &backend.profile {
            eprintln!(
                "  issuer   {} (client {})",
                profile.issuer_label(),
                profile.client_id
            );
        }
        return;
    }
    eprintln!("  gateway  {}", settings.gateway.name);
    let mut profiles: Vec<&Arc<crate::config::Profile>> = Vec::new();
    for backend in &settings.backends {
        let login = backend.profile.as_ref().map_or(String::new(), |p| {
            if !profiles.iter().any(|known| known.name == p.name) {
                profiles.push(p);
            }
            format!(" (profile {})", p.name)
        });
        eprintln!("  backend  {}: {}{login}", backend.name, backend.url);
    }
    for profile in profiles {
        eprintln!(
            "  profile  {}: {} (client {})",
            profile.name,
            profile.issuer_label(),
            profile.client_id
        );
    }
}

/// Runs the program; the exit code is 0 after a clean session, 1 on a configuration or
/// startup error, 2 on a usage error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Validate(args)) => validate_command(args, cli.config.as_deref()),
        Some(Command::Schema) => print_stdout(&json_schema_text()),
        Some(Command::Login(args)) => {
            account_command(&cli, |settings| account::login(settings, &args.backends))
        }
        Some(Command::Logout(args)) => account_command(&cli, |settings| {
            account::logout(settings, &args.backends, args.all)
        }),
        Some(Command::Status(args)) => {
            account_command(&cli, |settings| account::status(settings, args.json))
        }
        None => run_proxy(&cli),
    }
}

/// Runs `login`, `logout` or `status` on the configuration, logging to stderr.
fn account_command<F: Future<Output = ExitCode>>(
    cli: &Cli,
    command: impl FnOnce(Settings) -> F,
) -> ExitCode {
    if let Err(e) = logging::init(cli.verbosity(), cli.log_file.as_deref()) {
        eprintln!("authful-mcp-proxy: cannot open log file: {e}");
        return ExitCode::from(2);
    }
    let settings = match load_settings(cli) {
        Ok(settings) => settings,
        Err(_) => return ExitCode::from(2),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let code = runtime.block_on(command(settings));
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// `authful-mcp-proxy validate`.
fn validate_command(args: &ValidateArgs, config: Option<&Path>) -> ExitCode {
    let Some(file) = args.file.as_deref().or(config) else {
        let mut command = Cli::command();
        command.build();
        let message = "no configuration file: give CONFIG, --config or AUTHFUL_MCP_CONFIG";
        let kind = clap::error::ErrorKind::MissingRequiredArgument;
        let usage = match command.find_subcommand_mut("validate") {
            Some(validate) => validate.error(kind, message),
            None => command.error(kind, message),
        };
        // Prints the usage and exits 2, as any other usage error.
        usage.exit()
    };
    let env = |name: &str| std::env::var(name).ok();
    let options = validate::Options {
        strict: args.strict,
        env: &env,
    };
    let checked = match validate::check_file(file, &options) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("authful-mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let code = print_stdout(&checked.diagnostics.render(args.format));
    if checked.diagnostics.has_errors() {
        ExitCode::from(1)
    } else {
        code
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not worth a panic.
fn print_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authful-mcp-proxy: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// Loads and resolves the settings; warnings and errors go to stderr before anything is read
/// from stdin: located in the file as `validate` prints them (summary included), or naming
/// the env var or flag.
fn load_settings(cli: &Cli) -> Result<Settings, ExitCode> {
    let with_file = cli.config.is_some();
    let print = |diagnostics: &crate::config::Diagnostics| {
        if with_file && diagnostics.has_errors() {
            eprint!("{}", diagnostics.render(Format::Human));
        } else {
            diagnostics
                .human_lines()
                .iter()
                .for_each(|l| eprintln!("{l}"));
        }
    };
    match cli.sources().settings() {
        Ok((settings, warnings)) => {
            print(&warnings);
            Ok(settings)
        }
        Err(ConfigError::Diagnostics(diagnostics)) => {
            print(&diagnostics);
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("authful-mcp-proxy: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// The proxy itself, when no subcommand is given. It serves until stdin closes, SIGTERM or
/// SIGINT arrives, closes the backend sessions, and exits 0.
fn run_proxy(cli: &Cli) -> ExitCode {
    let verbosity = cli.verbosity();
    if let Err(e) = logging::init(verbosity, cli.log_file.as_deref()) {
        eprintln!("authful-mcp-proxy: cannot open log file: {e}");
        return ExitCode::from(2);
    }
    let settings = match load_settings(cli) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if !cli.no_banner && verbosity != Verbosity::Silent {
        banner(&settings);
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        // Listening from the start: a signal that came before would end the process at once,
        // with no DELETE for the backends.
        let stop = stop_signal();
        let (stdin, stdout) = standard_streams::open();
        proxy::serve(settings, Arc::new(SystemBrowser), stdin, stdout, stop).await
    });
    // Neither a browser opener still running nor, after a signal, the thread blocked reading
    // stdin may keep the process alive: `serve` has closed everything that matters.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            // The error may quote a backend or a provider.
            eprintln!("authful-mcp-proxy: {}", printable(&e.to_string()));
            ExitCode::from(1)
        }
    }
}

/// The runtime of every command. One thread: a relayed call is a chain of small steps
/// (stdin, rmcp's service loop, the HTTP connection, stdout), and on a multi-thread runtime each
/// step may wake another worker — a futex and a context switch per step, which cost more than
/// the steps. The proxy's work per message is small; the browser opener runs on the blocking
/// pool.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("authful-mcp-proxy: cannot start: {e}");
            ExitCode::from(1)
        })
}

/// Registers for the signals that ask the proxy to stop — SIGTERM (a desktop client quitting)
/// and SIGINT (Ctrl-C in a terminal); Ctrl-C elsewhere — and resolves when one arrives. A
/// signal that cannot be listened for keeps its default action, and stdin EOF still ends the
/// session cleanly.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!("Cannot listen for {name} ({e}); it ends the proxy without closing");
            None
        }
    };
    let mut term = listen(SignalKind::terminate(), "SIGTERM");
    let mut int = listen(SignalKind::interrupt(), "SIGINT");
    async fn arrived(signal: Option<&mut tokio::signal::unix::Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            () = arrived(term.as_mut()) => tracing::debug!("SIGTERM received: shutting down"),
            () = arrived(int.as_mut()) => tracing::debug!("SIGINT received: shutting down"),
        }
    }
}

/// Resolves on Ctrl-C (see the Unix version).
#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = ()> + Send {
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::debug!("Ctrl-C received: shutting down"),
            Err(e) => {
                tracing::warn!("Cannot listen for Ctrl-C ({e})");
                std::future::pending::<()>().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("authful-mcp-proxy").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn the_parsed_command_line_never_shows_the_client_secret() {
        let cli = parse(&["https://m/mcp", "--oidc-client-secret", "flag-secret-42"]);
        assert_eq!(
            cli.sources().flags.get("oidc_client_secret"),
            Some("flag-secret-42")
        );
        assert!(!format!("{cli:?} {:?}", cli.sources()).contains("flag-secret-42"));
    }

    #[test]
    fn a_url_is_the_backend_not_a_subcommand() {
        let cli = parse(&["https://mcp.example.com/mcp", "--oidc-client-id", "c"]);
        assert!(cli.command.is_none());
        assert_eq!(
            cli.drop_in.0.get("backend_url"),
            Some("https://mcp.example.com/mcp")
        );
    }

    #[test]
    fn validate_takes_a_file_format_and_strict_and_the_global_config() {
        let cli = parse(&["validate", "--format", "github", "--strict", "c.yaml"]);
        let Some(Command::Validate(args)) = cli.command else {
            panic!("validate expected")
        };
        assert_eq!(args.format, Format::Github);
        assert!(args.strict);
        assert_eq!(args.file.as_deref(), Some(Path::new("c.yaml")));
        for args in [
            &["--config", "x.yaml", "validate"][..],
            &["validate", "-c", "x.yaml"],
        ] {
            let cli = parse(args);
            assert!(matches!(cli.command, Some(Command::Validate(_))));
            assert_eq!(cli.config.as_deref(), Some(Path::new("x.yaml")));
        }
    }

    #[test]
    fn unknown_formats_are_usage_errors() {
        let err = Cli::try_parse_from(["x", "validate", "--format", "xml"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The help names each drop-in setting's env var and default, and each default is the
    /// value a run gets when nothing sets it.
    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
    fn the_help_names_every_default_and_env_var() {
        let help = Cli::command().render_help().to_string().replace('\n', " ");
        let help: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for setting in &drop_in::SETTINGS {
            if let Some(default) = setting.default {
                assert!(help.contains(&format!("[default: {default}]")), "{help}");
            }
            if let Some(env) = setting.env {
                assert!(help.contains(&format!("[env: {env}]")), "{help}");
            }
        }
        let cli = parse(&[
            "https://m/mcp",
            "--oidc-issuer-url",
            "https://a",
            "--oidc-client-id",
            "c",
        ]);
        let sources = Sources {
            drop_in_env: DropInSettings::default(),
            ..cli.sources()
        };
        // Inside a jail: other tests set AUTHFUL_MCP_* env vars.
        let mut resolved = None;
        figment::Jail::expect_with(|_| {
            resolved = Some(sources.settings().unwrap().0);
            Ok(())
        });
        let settings = resolved.unwrap();
        let backend = &settings.backends[0];
        let profile = backend.profile.as_ref().unwrap();
        for setting in &drop_in::SETTINGS {
            let Some(default) = setting.default else {
                continue;
            };
            let actual = match setting.id {
                "oidc_scopes" => profile.scopes.join(" "),
                "oidc_redirect_url" => profile.redirect_url.to_string(),
                "oidc_flow" => profile.flow.as_str().to_owned(),
                "login_timeout" => profile.login_timeout.as_secs().to_string(),
                "request_timeout" => backend
                    .request_timeout
                    .map_or(0, |t| t.as_secs())
                    .to_string(),
                other => panic!("no check for the default of {other}"),
            };
            assert_eq!(actual, default.to_string(), "{}", setting.id);
        }
    }
}
