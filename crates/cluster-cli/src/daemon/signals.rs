//! SIGTERM and SIGINT as one stream.

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::exit::{CliResult, Code, Failure};

/// The termination signals.
pub(crate) struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers (from now on the signals no longer kill the process).
    pub(crate) fn install() -> CliResult<Self> {
        let err = |e: std::io::Error| {
            Failure::new(Code::Error, format!("cannot install signal handlers: {e}"))
        };
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
        })
    }

    /// Waits for the next signal; returns its name.
    pub(crate) async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
