use std::process::ExitCode;
use std::time::Duration;

use price_history::cli::{self, Cli};
use price_history::shutdown::Shutdown;

/// How long the exit waits for blocking work still running once the command has ended:
/// a DNS lookup in flight, or a private PostgreSQL's start that a SIGTERM interrupted (an
/// `initdb`, a wait for another process's start, `pg_ctl start`), which cannot be
/// cancelled and may take minutes. Waiting for all of it, as the runtime's drop does,
/// would break the promise to exit within 30 s of SIGTERM; the longest orderly stop (a
/// worker's, 25 s) plus this stays within it. (An interrupted export finishes its last
/// file itself, before this.)
const BLOCKING_WORK_AT_EXIT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
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
    });
    runtime.shutdown_timeout(BLOCKING_WORK_AT_EXIT);
    code
}
