//! The binary: everything, the command line included, is in the library (`app` is its edge), so
//! this stays one call.

fn main() -> std::process::ExitCode {
    backlog_mirror::main()
}
