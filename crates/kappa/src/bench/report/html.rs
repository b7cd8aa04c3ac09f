//! The report as one HTML page with its charts inline (SVG drawn with
//! plotters): viewable offline, nothing fetched.

use super::Report;
use super::table::{header, number, value};
use crate::bench::stats::Latency;
use anyhow::anyhow;
use plotters::prelude::*;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .75em;border-bottom:1px solid #ddd;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}h2{margin-top:2em}.charts svg{margin:.5em 0;display:block}";

pub fn render(r: &Report) -> anyhow::Result<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Kappa bench</title><style>{STYLE}</style></head><body><h1>Kappa bench</h1>"
    );
    for line in header(r) {
        let _ = write!(out, "<p>{}</p>", escape(&line));
    }
    let _ = write!(out, "<p><code>{}</code></p>", escape(&r.command));
    out.push_str("<table><tr><th>step</th><th>figure</th><th>value</th><th>vs floor</th></tr>");
    for s in &r.steps {
        for f in &s.figures {
            let ratio = f
                .ratio
                .as_ref()
                .map(|x| format!("{}x {}", number(x.value), x.to))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                s.step,
                escape(&f.name),
                escape(&value(f.value, f.unit)),
                escape(&ratio)
            );
        }
    }
    out.push_str("</table>");
    for c in &r.check {
        let _ = write!(
            out,
            "<p>Checked {}: {} accounts, {} records, equal to the generator's totals.</p>",
            escape(&c.when),
            number(c.accounts as f64),
            number(c.records as f64)
        );
    }
    for s in &r.steps {
        if s.timeline.is_empty() && s.latency.is_empty() {
            continue;
        }
        let _ = write!(out, "<h2>{}</h2><div class=\"charts\">", s.step);
        for (name, series) in &s.timeline {
            out.push_str(&throughput_chart(
                &format!("{name}: records/s over time"),
                series,
            )?);
        }
        for (name, l) in &s.latency {
            out.push_str(&latency_chart(name, l)?);
        }
        out.push_str("</div>");
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn failed<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw a chart: {e:?}")
}

/// Records per second against seconds since the step began.
pub fn throughput_chart(title: &str, series: &[(f64, f64)]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let x_max = series.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-3);
        let y_max = series.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("records/s")
            .y_label_formatter(&|v| number(*v))
            .draw()
            .map_err(failed)?;
        chart
            .draw_series(LineSeries::new(
                series.iter().copied(),
                BLUE.stroke_width(2),
            ))
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// A latency histogram on a logarithmic time axis.
pub fn latency_chart(name: &str, l: &Latency) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let lo = l.histogram.first().map_or(1.0, |b| b.0);
        let hi = l.histogram.last().map_or(2.0, |b| b.1).max(lo * 1.01);
        let top = l.histogram.iter().map(|b| b.2).max().unwrap_or(1).max(1);
        let title = format!(
            "{name}: p50 {} µs, p99 {} µs, max {} µs ({} samples)",
            number(l.p50_us),
            number(l.p99_us),
            number(l.max_us),
            number(l.count as f64)
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), 0u64..top + top / 10 + 1)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc("µs")
            .y_desc("count")
            .x_labels(8)
            .x_label_formatter(&|v| number(*v))
            .draw()
            .map_err(failed)?;
        chart
            .draw_series(
                l.histogram
                    .iter()
                    .map(|&(a, b, c)| Rectangle::new([(a, 0), (b, c)], BLUE.mix(0.6).filled())),
            )
            .map_err(failed)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let series: Vec<(f64, f64)> = (1..=20)
            .map(|i| (i as f64 / 10.0, 1000.0 * i as f64))
            .collect();
        let svg = throughput_chart("ingest: records/s over time", &series).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("records/s over time"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        let samples: Vec<Duration> = (1..500).map(|i| Duration::from_micros(i * 7)).collect();
        let l = Latency::of(&samples).unwrap();
        let svg = latency_chart("point query", &l).unwrap();
        assert!(svg.contains("point query: p50"));
        assert!(svg.matches("<rect").count() >= l.histogram.len());
    }
}
