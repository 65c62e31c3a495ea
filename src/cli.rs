//! The command line: flags and env vars in the Python original's names, subcommands, and which
//! command runs with what.
//!
//! [`Cli`] is the command line as given: each flag defined once, the drop-in's own straight
//! from the table of its settings ([`drop_in::SETTINGS`]), with their help. Resolving it —
//! logging set up, the configuration's layers turned into [`Settings`], the file `validate`
//! checks — happens here too, so that a command in [`crate::commands`] receives what it works
//! on, never the flags.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{
    Arg, ArgMatches, Args, CommandFactory, Parser, Subcommand,
    builder::{PossibleValuesParser, TypedValueParser},
};

use crate::{
    commands::{self, EXIT_STATUS_HELP, Outcome},
    config::{
        ConfigError, DropInSettings, Format, Settings, Sources,
        drop_in::{self, Kind},
    },
    logging::{self, Verbosity},
};

/// Lets desktop MCP clients use remote MCP servers that validate OIDC bearer tokens: logs you
/// in with your identity provider and relays MCP between stdio and Streamable HTTP.
///
/// Without a subcommand it runs the proxy: `authful-mcp-proxy [OPTIONS] [MCP_BACKEND_URL]`.
/// The exit status follows one rule for every command (below); each subcommand's help says
/// what it means for that command.
#[derive(Debug, Parser)]
#[command(name = "authful-mcp-proxy", version, after_help = EXIT_STATUS_HELP)]
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

/// The arguments of `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print the configuration reference (docs/configuration.md) instead, in Markdown
    #[arg(long)]
    pub markdown: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a configuration file and report every problem at once. Exit status: 0 valid
    /// (warnings allowed), 2 invalid or unreadable (a configuration error, as at the proxy's
    /// start) or a usage error
    Validate(ValidateArgs),
    /// Print the JSON Schema of the configuration file
    Schema(SchemaArgs),
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

/// Runs the command the command line names; its [`Outcome`] is the process's exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Some(Command::Validate(args)) => {
            let file = validate_file(args, cli.config.as_deref());
            commands::validate::run(file, args.format, args.strict)
        }
        Some(Command::Schema(args)) => commands::schema::run(args.markdown),
        Some(Command::Login(args)) => {
            cli.with_settings(|settings| commands::login::run(settings, &args.backends))
        }
        Some(Command::Logout(args)) => {
            cli.with_settings(|settings| commands::logout::run(settings, &args.backends, args.all))
        }
        Some(Command::Status(args)) => {
            cli.with_settings(|settings| commands::status::run(settings, args.json))
        }
        None => {
            let banner = !cli.no_banner && cli.verbosity() != Verbosity::Silent;
            cli.with_settings(|settings| commands::run::run(settings, banner))
        }
    };
    outcome.into()
}

/// The file `validate` checks: its argument, else `--config` / `AUTHFUL_MCP_CONFIG`; without
/// either, a usage error (exit 2, with the usage).
fn validate_file<'a>(args: &'a ValidateArgs, config: Option<&'a Path>) -> &'a Path {
    if let Some(file) = args.file.as_deref().or(config) {
        return file;
    }
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
}

impl Cli {
    /// Runs `command` on the resolved settings (see [`Cli::settings`]), on the commands'
    /// runtime.
    fn with_settings<F: Future<Output = Outcome>>(
        &self,
        command: impl FnOnce(Settings) -> F,
    ) -> Outcome {
        match self.settings() {
            Ok(settings) => commands::block_on(command(settings)),
            Err(outcome) => outcome,
        }
    }

    /// Logging set up and the settings resolved: what every command that reads the
    /// configuration starts from. Warnings and errors go to stderr before anything is read from
    /// stdin: located in the file as `validate` prints them (summary included), or naming the
    /// env var or flag.
    ///
    /// Either failing is a usage or configuration error: `--log-file` names a file that cannot
    /// be opened, or the settings are not valid.
    fn settings(&self) -> Result<Settings, Outcome> {
        if let Err(e) = logging::init(self.verbosity(), self.log_file.as_deref()) {
            eprintln!("authful-mcp-proxy: cannot open log file: {e}");
            return Err(Outcome::UsageError);
        }
        let with_file = self.config.is_some();
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
        match self.sources().settings() {
            Ok((settings, warnings)) => {
                print(&warnings);
                Ok(settings)
            }
            Err(ConfigError::Diagnostics(diagnostics)) => {
                print(&diagnostics);
                Err(Outcome::UsageError)
            }
            Err(e) => {
                eprintln!("authful-mcp-proxy: {e}");
                Err(Outcome::UsageError)
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
    fn the_help_states_the_exit_status_rule() {
        let help = Cli::command().render_long_help().to_string();
        let help: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(help.contains(EXIT_STATUS_HELP), "{help}");
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
