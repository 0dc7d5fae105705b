//! How the CLI prints: tables for people, JSON for scripts.
//!
//! A [`Table`] fits the terminal: its width comes from `COLUMNS`, else the size of the
//! terminal on stdout, else [`DEFAULT_WIDTH`]. Cells show their first line only. When
//! the columns do not fit, the ones of lowest priority are truncated (with `…`) down
//! to their minimum width, then dropped, so a row never wraps.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The width when neither `COLUMNS` nor the terminal says.
pub const DEFAULT_WIDTH: usize = 100;

/// Between two columns.
const GAP: &str = "  ";

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("error: cannot encode output as JSON: {error}"),
    }
}

/// One column: its title, how much it is worth keeping when space runs out (higher
/// is kept longer), and the width below which it is dropped rather than truncated.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub title: &'static str,
    pub priority: u8,
    pub min: usize,
}

/// A column that is kept whole as long as anything is: an id, a name.
pub const fn key(title: &'static str) -> Column {
    Column {
        title,
        priority: u8::MAX,
        min: usize::MAX,
    }
}

/// A column of the given priority and minimum width.
pub const fn column(title: &'static str, priority: u8, min: usize) -> Column {
    Column {
        title,
        priority,
        min,
    }
}

/// Rows under a header, laid out to fit [`terminal_width`] when printed. Its text has
/// no newline at the end.
#[derive(Debug)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    width: usize,
}

impl Table {
    pub fn new(columns: &[Column]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
            width: terminal_width(),
        }
    }

    /// Adds a row: one cell per column, of which only the first line is shown.
    pub fn add_row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let row = cells
            .into_iter()
            .map(|cell| {
                let cell: String = cell.into();
                cell.lines().next().unwrap_or_default().to_owned()
            })
            .collect();
        self.rows.push(row);
    }

    /// The width each column gets, `None` for a dropped one.
    fn layout(&self) -> Vec<Option<usize>> {
        let natural: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|cell| cell.chars().count())
                    .chain([column.title.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let floor: Vec<usize> = self
            .columns
            .iter()
            .zip(&natural)
            .map(|(column, natural)| column.min.min(*natural))
            .collect();
        let mut shown: Vec<bool> = vec![true; self.columns.len()];
        let total = |widths: &[usize], shown: &[bool]| {
            let visible: Vec<usize> = widths
                .iter()
                .zip(shown)
                .filter(|(_, shown)| **shown)
                .map(|(width, _)| *width)
                .collect();
            visible.iter().sum::<usize>() + GAP.len() * visible.len().saturating_sub(1)
        };
        // Drop the least valuable column (the rightmost of equals) until the rest fit
        // at their minimum widths; never the last one shown.
        while total(&floor, &shown) > self.width && shown.iter().filter(|s| **s).count() > 1 {
            let drop = (0..self.columns.len())
                .filter(|&i| shown[i])
                .min_by_key(|&i| (self.columns[i].priority, std::cmp::Reverse(i)))
                .expect("a column is shown");
            shown[drop] = false;
        }
        // Then give the room left to the columns that need the least of it to be
        // whole (ids, times, names), so that only long text is cut.
        let mut widths = floor.clone();
        let mut room = self.width.saturating_sub(total(&floor, &shown));
        let mut by_value: Vec<usize> = (0..self.columns.len()).filter(|&i| shown[i]).collect();
        by_value.sort_by_key(|&i| {
            (
                natural[i] - floor[i],
                std::cmp::Reverse(self.columns[i].priority),
            )
        });
        for i in by_value {
            let more = (natural[i] - widths[i]).min(room);
            widths[i] += more;
            room -= more;
        }
        widths
            .into_iter()
            .zip(shown)
            .map(|(width, shown)| shown.then_some(width))
            .collect()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = self.layout();
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut parts = Vec::new();
            for (cell, width) in cells.zip(&layout) {
                if let Some(width) = width {
                    parts.push(format!("{:<width$}", fit(cell, *width)));
                }
            }
            parts.join(GAP).trim_end().to_owned()
        };
        let rules: Vec<String> = layout
            .iter()
            .map(|width| "─".repeat(width.unwrap_or(0)))
            .collect();
        let mut lines = vec![
            line(&mut self.columns.iter().map(|c| c.title)),
            line(&mut rules.iter().map(String::as_str)),
        ];
        lines.extend(
            self.rows
                .iter()
                .map(|row| line(&mut row.iter().map(String::as_str))),
        );
        f.write_str(&lines.join("\n"))
    }
}

/// `text` cut to `width` characters, its last one `…` when it was longer.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push('…');
    }
    cut
}

/// The width tables get: `COLUMNS` if it is a positive number, else the width of the
/// terminal on stdout, else [`DEFAULT_WIDTH`] (output to a pipe or a file).
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|columns| columns.trim().parse::<usize>().ok())
        .filter(|columns| *columns > 0)
        .or_else(stdout_terminal_width)
        .unwrap_or(DEFAULT_WIDTH)
}

#[cfg(unix)]
fn stdout_terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ only writes a `winsize` through the pointer, which points to
    // one that lives through the call; on a descriptor that is not a terminal it fails
    // and writes nothing.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (found == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(not(unix))]
fn stdout_terminal_width() -> Option<usize> {
    None
}

pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

pub fn opt(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// Shortens long text for a line that is not a table cell.
pub fn clip(text: &str, max: usize) -> String {
    fit(text.lines().next().unwrap_or_default(), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(width: usize) -> Table {
        let mut table = Table {
            columns: vec![key("id"), column("type", 1, 6), column("error", 5, 10)],
            rows: Vec::new(),
            width,
        };
        table.add_row([
            "1",
            "http.request",
            "webhook answered 503 Service Unavailable\nbody",
        ]);
        table
    }

    #[test]
    fn a_wide_terminal_shows_every_cell_whole_and_first_lines_only() {
        let text = table(200).to_string();
        assert_eq!(
            text,
            "id  type          error\n\
             ──  ────────────  ────────────────────────────────────────\n\
             1   http.request  webhook answered 503 Service Unavailable"
        );
    }

    #[test]
    fn long_text_is_cut_and_low_priority_columns_go() {
        let text = table(40).to_string();
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(
            text.contains("1   http.request  webhook answered 503 …"),
            "{text}"
        );
        let text = table(20).to_string();
        assert!(!text.contains("type"), "{text}");
        assert!(text.contains("webhook answere…"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 20), "{text}");
    }
}
