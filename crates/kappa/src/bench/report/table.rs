//! The report as a plain-text table (what `kappa bench` prints).

use super::Report;
use std::fmt::Write;

/// `1234567.8` as `1,234,568`; small numbers with three significant
/// digits.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if v < 0.0 { format!("-{out}") } else { out };
    }
    if v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 3) as usize;
    format!("{v:.decimals$}")
}

/// A value with its unit (a ratio's `x` sticks to it).
pub fn value(v: f64, unit: &str) -> String {
    match unit {
        "" => number(v),
        "x" => format!("{}x", number(v)),
        u => format!("{} {u}", number(v)),
    }
}

/// The header lines: what ran where, and the floors.
pub fn header(r: &Report) -> Vec<String> {
    let s = &r.settings;
    let keys = match s.zipf {
        Some(z) => format!("zipf {z}"),
        None => "uniform".into(),
    };
    vec![
        format!("kappa {} bench: {}", r.kappa, r.target),
        format!(
            "machine: {} cores, {}, {} GiB, Linux {}",
            r.machine.cores, r.machine.cpu, r.machine.memory_gib, r.machine.kernel
        ),
        format!(
            "workload: {} records, {} accounts ({keys}), seed {}{}",
            number(s.records as f64),
            number(s.keys as f64),
            s.seed,
            if s.quick { ", --quick" } else { "" }
        ),
        format!(
            "floors: disk {} MB/s (1 MiB writes, each fdatasync'd), fdatasync p50 {} µs, JSON parse-and-fold {} records/s",
            number(r.floors.disk_write_mb_s),
            number(r.floors.fdatasync.p50_us),
            number(r.floors.json_fold_records_s)
        ),
    ]
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for line in header(r) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out);
    let rows: Vec<[String; 4]> = r
        .steps
        .iter()
        .flat_map(|s| {
            s.figures.iter().map(|f| {
                [
                    s.step.to_string(),
                    f.name.clone(),
                    value(f.value, f.unit),
                    f.ratio
                        .as_ref()
                        .map(|x| format!("{}x {}", number(x.value), x.to))
                        .unwrap_or_default(),
                ]
            })
        })
        .collect();
    let head = ["step", "figure", "value", "vs floor"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let _ = writeln!(
        out,
        "{:w0$}  {:w1$}  {:>w2$}  {}",
        head[0], head[1], head[2], head[3]
    );
    for row in &rows {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:>w2$}  {}",
            row[0], row[1], row[2], row[3]
        );
    }
    let _ = writeln!(out);
    if let Some(last) = r.check.last() {
        let _ = writeln!(
            out,
            "answers checked against the generator's totals {} time(s); last {}: {} accounts, {} records, all equal",
            r.check.len(),
            last.when,
            number(last.accounts as f64),
            number(last.records as f64)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{number, value};

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.8), "1,234,568");
        assert_eq!(number(1000.0), "1,000");
        assert_eq!(number(999.4), "999");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(0.5), "0.500");
        assert_eq!(number(-2500.0), "-2,500");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(8.0), "8");
        assert_eq!(value(1.234, "x"), "1.23x");
        assert_eq!(value(8.0, ""), "8");
        assert_eq!(value(12.5, "ms"), "12.5 ms");
    }
}
