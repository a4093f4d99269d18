//! Output: the `-o` formats, colour (ANSI codes written through `anstream`, which drops them when stdout
//! is not a terminal or `NO_COLOR` is set), and aligned tables that measure text without its colour codes.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use serde::Serialize;

/// `-o`: how a report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain words or an aligned table.
    Table,
    /// The table with more columns.
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl Format {
    /// JSON or YAML.
    pub fn structured(self) -> bool {
        matches!(self, Format::Json | Format::Yaml)
    }
}

/// `value` as JSON or YAML (None for the human formats).
pub fn structured<T: Serialize>(value: &T, format: Format) -> anyhow::Result<Option<String>> {
    Ok(match format {
        Format::Json => Some(serde_json::to_string_pretty(value)? + "\n"),
        Format::Yaml => Some(serde_saphyr::to_string(value)?),
        Format::Table | Format::Wide => None,
    })
}

fn paint(style: Style, text: &str) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

/// Headings and names.
pub fn bold(text: &str) -> String {
    paint(Style::new().bold(), text)
}
/// Good news: live, valid, agrees.
pub fn good(text: &str) -> String {
    paint(AnsiColor::Green.on_default(), text)
}
/// Errors and failures.
pub fn bad(text: &str) -> String {
    paint(AnsiColor::Red.on_default().bold(), text)
}
/// Warnings and disagreements.
pub fn warn(text: &str) -> String {
    paint(AnsiColor::Yellow.on_default(), text)
}
/// Secondary detail.
pub fn dim(text: &str) -> String {
    paint(Style::new().dimmed(), text)
}

/// The width of `text` on screen: without colour codes, in characters.
pub fn width(text: &str) -> usize {
    anstream::adapter::strip_str(text).to_string().chars().count()
}

/// Rows aligned in columns two spaces apart; the first row is the header (printed bold).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(cell));
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(width(cell)) + 2;
                text.push_str(&" ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut out, header.iter().map(|h| bold(h)).collect());
    for row in rows {
        line(&mut out, row.clone());
    }
    out
}

/// Prints to stdout (colour dropped when it is not a terminal or NO_COLOR is set).
pub fn print(text: &str) {
    use std::io::Write as _;
    let mut out = anstream::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints to stderr (colour dropped when it is not a terminal or NO_COLOR is set).
pub fn eprint(text: &str) {
    use std::io::Write as _;
    let mut out = anstream::stderr();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_visible_width() {
        let t = table(&["A", "BB"], &[vec![good("xyz"), "1".into()], vec!["q".into(), "22".into()]]);
        let plain = anstream::adapter::strip_str(&t).to_string();
        assert_eq!(plain, "A    BB\nxyz  1\nq    22\n");
    }
}
