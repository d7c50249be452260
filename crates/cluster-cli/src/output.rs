//! Human output (aligned tables) and JSON output.

use serde::Serialize;

use crate::exit::{Code, Failure};

/// Version of every JSON document the CLI prints.
pub(crate) const JSON_VERSION: u32 = 1;

/// An aligned text table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with two spaces between columns and no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let empty = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).unwrap_or(&empty);
                if i + 1 == cols {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for nothing.
pub(crate) fn dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// Prints a JSON document on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(Code::Error, format!("cannot encode JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Prints an error: as JSON on stdout in `--json` mode, as text on stderr otherwise.
pub(crate) fn print_failure(failure: &Failure, json: bool) {
    if failure.message.is_empty() {
        return; // already reported
    }
    if json {
        let doc = serde_json::json!({
            "v": JSON_VERSION,
            "error": {"kind": failure.code.kind(), "code": failure.code as i32, "message": failure.message},
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        eprintln!("error: {}", failure.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_aligned_without_trailing_spaces() {
        let mut t = Table::new(&["NODE", "ROLE", "EPOCH"]);
        t.row(vec!["node-1".into(), "leader".into(), "42".into()]);
        t.row(vec!["n2".into(), "standby".into(), "-".into()]);
        assert_eq!(
            t.render(),
            "NODE    ROLE     EPOCH\n\
             node-1  leader   42\n\
             n2      standby  -\n"
        );
    }
}
