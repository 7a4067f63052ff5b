//! The soak plot: four panels over time, one line per node: resident memory, open descriptors
//! (with the live sockets dashed beside them), tasks (every live task, and the connection tasks)
//! and queue depth (the runtime's shared run queue and the webhook backlog). Written as an SVG by
//! plotters, with shaded bands where the run warmed up and where it went idle.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use plotters::prelude::*;

use super::sample::{Phase, Sample};

/// Size of the whole picture, pixels.
const SIZE: (u32, u32) = (1100, 1300);

/// One line of a panel: its name, the figure it reads from a sample, and whether it is dashed.
type Series = (&'static str, fn(&Sample) -> f64, bool);

/// A panel: its title, its y label, and the series it draws from a sample.
struct Panel {
    title: &'static str,
    y_desc: &'static str,
    series: &'static [Series],
}

const MIB: f64 = 1024.0 * 1024.0;

/// Most points drawn per line: a long run is thinned to this many buckets, each drawn at its
/// largest value, so peaks stay visible and the SVG stays small enough to commit.
const MAX_POINTS: usize = 360;

/// `pts` thinned to at most [`MAX_POINTS`] buckets, each at its first x and its largest y.
fn thin(pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if pts.len() <= MAX_POINTS {
        return pts;
    }
    pts.chunks(pts.len().div_ceil(MAX_POINTS))
        .map(|c| (c[0].0, c.iter().map(|p| p.1).fold(f64::MIN, f64::max)))
        .collect()
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "resident memory",
        y_desc: "RSS (MiB)",
        series: &[("rss", |s| s.rss_bytes as f64 / MIB, false)],
    },
    Panel {
        title: "open descriptors (dashed: live sockets)",
        y_desc: "count",
        series: &[
            ("fds", |s| s.fds as f64, false),
            ("sockets", |s| s.sockets as f64, true),
        ],
    },
    Panel {
        title: "tasks (dashed: connection tasks)",
        y_desc: "tasks",
        series: &[
            ("alive tasks", |s| s.alive_tasks as f64, false),
            ("connection tasks", |s| s.connection_tasks as f64, true),
        ],
    },
    Panel {
        title: "queue depth (dashed: webhooks pending)",
        y_desc: "queued",
        series: &[
            ("runtime queue", |s| s.global_queue as f64, false),
            ("webhooks pending", |s| s.webhooks_pending as f64, true),
        ],
    },
];

/// Writes the plot of `samples` (of `nodes` nodes) to `path`.
pub fn write_svg(path: &Path, title: &str, samples: &[Sample], nodes: usize) -> Result<()> {
    if samples.is_empty() {
        bail!("nothing to plot: no samples");
    }
    // Minutes for a long run, seconds for a short one, so the axis labels stay distinct.
    let span_s = samples.iter().map(|s| s.t_s).fold(0.0, f64::max);
    let (unit, x_desc) = if span_s > 300.0 {
        (60.0, "minutes")
    } else {
        (1.0, "seconds")
    };
    let minutes = |s: &Sample| s.t_s / unit;
    let x_max = samples.iter().map(minutes).fold(0.0, f64::max).max(1.0);
    let warm_end = samples
        .iter()
        .filter(|s| s.phase == Phase::Churn)
        .map(minutes)
        .fold(f64::MAX, f64::min);
    let idle_start = samples
        .iter()
        .filter(|s| s.phase == Phase::Idle)
        .map(minutes)
        .fold(f64::MAX, f64::min);

    let draw = || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 24))?;
        let areas = root.split_evenly((PANELS.len(), 1));
        for (panel, area) in PANELS.iter().zip(areas.iter()) {
            let y_max = samples
                .iter()
                .flat_map(|s| panel.series.iter().map(move |(_, f, _)| f(s)))
                .fold(2.0, f64::max)
                * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            chart
                .configure_mesh()
                .light_line_style(WHITE)
                .x_desc(x_desc)
                .y_desc(panel.y_desc)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.0}"))
                .y_labels(if y_max < 10.0 { 3 } else { 8 })
                .draw()?;
            let shade = BLACK.mix(0.06).filled();
            if warm_end < f64::MAX {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, 0.0), (warm_end, y_max)],
                    shade,
                )))?;
            }
            if idle_start < f64::MAX {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(idle_start, 0.0), (x_max, y_max)],
                    shade,
                )))?;
            }
            for node in 0..nodes {
                let color = Palette99::pick(node).to_rgba();
                for (name, f, dashed) in panel.series {
                    let pts = thin(
                        samples
                            .iter()
                            .filter(|s| s.node == node)
                            .map(|s| (minutes(s), f(s)))
                            .collect(),
                    );
                    let style = color.stroke_width(if *dashed { 1 } else { 2 });
                    let label = format!("node {node} {name}");
                    if *dashed {
                        chart
                            .draw_series(DashedLineSeries::new(pts, 6, 4, style))?
                            .label(label)
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 20, y)], style)
                            });
                    } else {
                        chart
                            .draw_series(LineSeries::new(pts, style))?
                            .label(label)
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 20, y)], style)
                            });
                    }
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thins_long_lines_keeping_peaks() {
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (f64::from(i), 1.0)).collect();
        let mut with_peak = pts.clone();
        with_peak[501].1 = 9.0;
        let thinned = thin(with_peak);
        assert!(thinned.len() <= MAX_POINTS);
        assert!(thinned.iter().any(|p| p.1 == 9.0));
        assert_eq!(thin(pts[..10].to_vec()).len(), 10);
    }

    #[test]
    fn writes_four_panels() {
        let samples: Vec<Sample> = (0u32..40)
            .flat_map(|i| {
                (0..2).map(move |node| Sample {
                    t_s: f64::from(i),
                    node,
                    phase: match i {
                        0..=9 => Phase::Warmup,
                        10..=29 => Phase::Churn,
                        _ => Phase::Idle,
                    },
                    rss_bytes: 20 << 20,
                    fds: 30 + u64::from(i % 7),
                    sockets: u64::from(i % 7),
                    alive_tasks: 12,
                    ..Sample::default()
                })
            })
            .collect();
        let path = std::env::temp_dir().join(format!("vestnik-soak-{}.svg", std::process::id()));
        write_svg(&path, "test", &samples, 2).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("resident memory") && svg.contains("node 1 fds"));
    }
}
