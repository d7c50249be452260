//! Exit codes and the errors that carry them.

use cluster::Error;

/// The process exit codes (documented in docs/CLI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Success.
    Ok = 0,
    /// An error (unreachable platform, failed operation, unhealthy platform for `health`).
    Error = 1,
    /// Not available: the capability is not in this build yet, or the operation is not
    /// supported for its target (core `Unsupported`); nothing was changed.
    NotAvailable = 2,
    /// An unknown app or node.
    NotFound = 3,
    /// Invalid usage or configuration; nothing was started or changed.
    Invalid = 4,
}

impl Code {
    /// The kind name used in JSON errors.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::Error => "error",
            Code::NotAvailable => "not_available",
            Code::NotFound => "not_found",
            Code::Invalid => "invalid",
        }
    }
}

/// An error ending the command: a message saying what to do next, and an exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: Code,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_available(command: &str, needs: &str) -> Self {
        Self::new(
            Code::NotAvailable,
            format!(
                "`cluster {command}` is not available yet: it needs {needs}, which has not landed \
                 in this build. Nothing was changed."
            ),
        )
    }
}

impl Failure {
    /// The core error with the same meaning (to send a failure over the dev bridge, which
    /// carries core errors).
    pub(crate) fn into_core(self) -> Error {
        match self.code {
            Code::NotFound => Error::NodeNotFound(self.message),
            Code::Invalid => Error::InvalidArgument(self.message),
            Code::NotAvailable => Error::Unsupported(self.message),
            Code::Ok | Code::Error => Error::Internal(self.message),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<Failure>() {
            Ok(f) => f,
            Err(e) => match e.downcast_ref::<Error>() {
                Some(core) => from_core(core, &format!("{e:#}")),
                None => Failure::new(Code::Error, format!("{e:#}")),
            },
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        from_core(&e, &message)
    }
}

fn from_core(e: &Error, message: &str) -> Failure {
    let code = match e {
        Error::AppNotFound(_) | Error::NodeNotFound(_) => Code::NotFound,
        Error::InvalidArgument(_) | Error::InvalidId(_) => Code::Invalid,
        Error::Unsupported(_) => Code::NotAvailable,
        _ => Code::Error,
    };
    Failure::new(code, message)
}

/// Result of a command.
pub(crate) type CliResult<T = ()> = Result<T, Failure>;
