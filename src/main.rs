//! Parse, set up logging, run, map the outcome to an exit code. Everything else is in the library.

use std::io::Write;
use std::process::ExitCode;

use backlog_mirror::app;
use backlog_mirror::cli::{Cli, Command};
use backlog_mirror::error::exit;
use clap::Parser;

fn main() -> ExitCode {
    backlog_mirror::secret::register_inputs(std::env::args_os().skip(1));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    app::init_tracing(cli.verbose, cli.quiet);
    let code = match cli.command {
        Command::Sync(args) => app::sync(&args, cli.quiet),
        Command::CredentialHelper(args) => app::credential_helper(&args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// clap's usage errors, cut to the one line that names the flag, with exit code 2.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        let code = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            exit::USAGE
        } else {
            exit::OK
        };
        return ExitCode::from(code as u8);
    }
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let _ = writeln!(
        std::io::stderr(),
        "error: {}; see 'backlog-mirror {} --help'",
        backlog_mirror::secret::scrub(first),
        if text.contains("credential-helper") {
            "credential-helper"
        } else {
            "sync"
        }
    );
    ExitCode::from(exit::USAGE as u8)
}
