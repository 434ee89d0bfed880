//! The `callflow` binary: parses the command line and hands over to
//! [`cli::run`]; the only place that turns errors into exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// See Cargo.toml: faster for the many small allocations calls make.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.default_log_level());
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`callflow check | head`) is not a failure.
            let broken_pipe = err.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}
