//! A child's output: a log file, or pipes read into a ring buffer and an optional handler.

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives every line the child writes (without the newline), from a reader thread: it must
/// not block for long.
#[derive(Clone)]
pub struct OutputHandler(pub Arc<LineFn>);

/// The function behind an [`OutputHandler`].
pub type LineFn = dyn Fn(Stream, &str) + Send + Sync;

impl OutputHandler {
    /// A handler calling `f`.
    pub fn new(f: impl Fn(Stream, &str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl fmt::Debug for OutputHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutputHandler(..)")
    }
}

/// The last lines written by the child (both streams, in arrival order).
#[derive(Clone, Default)]
pub(crate) struct Tail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

/// Lines kept in memory per backend.
pub(crate) const TAIL_LINES: usize = 1000;

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    pub(crate) fn last(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// Starts a thread forwarding the lines of `reader` to `tail` and `handler`; it ends at EOF
/// (when the child and everything that inherited the pipe have exited).
pub(crate) fn forward(
    reader: impl Read + Send + 'static,
    stream: Stream,
    tail: Tail,
    handler: Option<OutputHandler>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cluster-backend-output".into())
        .spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']);
                        if let Some(h) = &handler {
                            (h.0)(stream, line);
                        }
                        tail.push(line.to_owned());
                    }
                }
            }
        })
        .map(|_| ())
}

/// The last `n` lines of the file at `path` (reads at most its last 256 KiB).
pub(crate) fn file_tail(path: &Path, n: usize) -> Vec<String> {
    const MAX: u64 = 256 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(MAX);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // probably a partial line
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}
