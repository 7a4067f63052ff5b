//! Latency against offered load as an SVG: p50 and p99 delivery latency (log scale) over offered
//! deliveries per second, one point per sweep step or fan-out report.
//!
//! Only plotters' SVG backend is used, with its built-in text metrics, so no system font is needed.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;

use crate::report::{Report, SweepPoint};

/// Size of the picture, pixels.
const SIZE: (u32, u32) = (960, 600);

/// The points of a report: its sweep steps, or its single fan-out delivery figures.
pub fn points_of(report: &Report) -> Vec<SweepPoint> {
    if !report.sweep.is_empty() {
        return report.sweep.clone();
    }
    report
        .delivery
        .as_ref()
        .filter(|d| d.offered_per_s > 0.0 && d.latency_us.count > 0)
        .map(|d| SweepPoint {
            rate: report.http.as_ref().map_or(0.0, |h| h.offered_events_per_s),
            offered_per_s: d.offered_per_s,
            per_s: d.per_s,
            sent_per_s: report.http.as_ref().map_or(0.0, |h| h.events_per_s),
            cores: report.bench.cores.clone(),
            other_cores: report.bench.other_cores,
            broker_cpu_cores: report.broker.as_ref().map(|b| b.cpu_cores),
            bench_cpu_cores: report
                .delivery
                .as_ref()
                .filter(|d| d.window_s > 0.0)
                .map_or(0.0, |d| report.bench.cpu_s / d.window_s),
            expected: d.expected,
            delivered: d.delivered,
            lost: d.lost,
            latency_us: d.latency_us.clone(),
            cpu_us_per_delivery: report.broker.as_ref().and_then(|b| b.cpu_us_per_delivery),
        })
        .into_iter()
        .collect()
}

/// Writes the latency-versus-load chart of `points` to `path`.
pub fn write_svg(path: &Path, title: &str, points: &[SweepPoint]) -> Result<()> {
    let mut points: Vec<&SweepPoint> = points.iter().filter(|p| p.latency_us.count > 0).collect();
    if points.is_empty() {
        bail!("nothing to plot: no point has latency samples");
    }
    points.sort_by(|a, b| a.offered_per_s.total_cmp(&b.offered_per_s));
    let ms = |us: u64| (us.max(1) as f64) / 1e3;
    let p50: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.offered_per_s, ms(p.latency_us.p50)))
        .collect();
    let p99: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.offered_per_s, ms(p.latency_us.p99)))
        .collect();
    let x_max = points.iter().map(|p| p.offered_per_s).fold(1.0, f64::max) * 1.05;
    let ys = p50.iter().chain(&p99).map(|(_, y)| *y);
    let y_min = ys.clone().fold(f64::MAX, f64::min) / 2.0;
    let y_max = ys.fold(0.0, f64::max) * 2.0;

    let draw = || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered deliveries per second")
            .y_desc("delivery latency (ms, log scale)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;
        for (label, data, color) in [("p50", &p50, BLUE), ("p99", &p99, RED)] {
            chart
                .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(
                data.iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Percentiles;

    #[test]
    fn writes_an_svg() {
        let pts: Vec<SweepPoint> = [
            (1000.0, 300, 900),
            (5000.0, 400, 2000),
            (20000.0, 900, 9000),
        ]
        .iter()
        .map(|&(offered, p50, p99)| SweepPoint {
            offered_per_s: offered,
            latency_us: Percentiles {
                count: 10,
                p50,
                p99,
                ..Percentiles::default()
            },
            ..SweepPoint::default()
        })
        .collect();
        let path = std::env::temp_dir().join(format!("vestnik-bench-{}.svg", std::process::id()));
        write_svg(&path, "test", &pts).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("p99"));
    }
}
