//! Printing objects as tables, JSON or YAML.

use serde::Serialize;

/// `-o` choices.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Human-readable columns.
    #[default]
    Table,
    /// Kubernetes-style JSON.
    Json,
    /// Kubernetes-style YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML.
pub fn print_object<T: Serialize>(format: Format, value: &T) -> anyhow::Result<()> {
    print!("{}", render_object(format, value)?);
    Ok(())
}

/// `value` as JSON or YAML text, ending in a newline.
pub fn render_object<T: Serialize>(format: Format, value: &T) -> anyhow::Result<String> {
    Ok(match format {
        Format::Yaml => serde_saphyr::to_string(&serde_json::to_value(value)?)?,
        _ => format!("{}\n", serde_json::to_string_pretty(value)?),
    })
}

/// Prints rows under `header` with aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}
