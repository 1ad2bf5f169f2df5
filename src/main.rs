use std::process::ExitCode;

use price_history::cli::{self, Cli};
use price_history::shutdown::Shutdown;

#[tokio::main]
async fn main() -> ExitCode {
    // First of all: from here on SIGTERM and SIGINT stop the process in order.
    let shutdown = Shutdown::on_signal();
    let cli = Cli::parse_args();
    match cli::run(cli, shutdown).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
