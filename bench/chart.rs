//! The PNG beside results.json: one panel per dataset, A, B and C side by side per scenario,
//! median seconds on a log scale (an initial mirror and a no-op differ by orders of magnitude).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::samples::{Scenario, Tool};
use crate::summary::{Figures, Report};

const FONT_FILES: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const A_COLOR: RGBColor = RGBColor(150, 150, 150);
const B_COLOR: RGBColor = RGBColor(31, 119, 180);
const C_COLOR: RGBColor = RGBColor(255, 127, 14);

type Error = Box<dyn std::error::Error>;

pub fn draw(path: &Path, report: &Report) -> Result<(), Error> {
    register_font()?;
    let cols = 2;
    let rows = report.datasets.len().max(1).div_ceil(cols);
    let width = 640 * cols as u32;
    let height = 96 + 340 * rows as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(96);
    title.draw(&Text::new(
        "backlog-mirror sync (B, blue) vs the article's shell steps (A, grey) and plain git (C, orange)",
        (16, 12),
        ("sans-serif", 22).into_font(),
    ))?;
    title.draw(&Text::new(
        format!(
            "median wall seconds of {} rounds (log scale); same sshd source and CodeCommit stand-ins",
            report.rounds
        ),
        (16, 44),
        ("sans-serif", 14).into_font(),
    ))?;
    title.draw(&Text::new(
        report.machine.describe(),
        (16, 66),
        ("sans-serif", 12).into_font(),
    ))?;
    for (area, dataset) in body.split_evenly((rows, cols)).iter().zip(&report.datasets) {
        panel(area, report, &dataset.name)?;
    }
    root.present()?;
    Ok(())
}

fn register_font() -> Result<(), Error> {
    let path = FONT_FILES
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no DejaVu Sans font found (apt-get install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{path} is not a usable font"))?;
    Ok(())
}

fn panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    report: &Report,
    name: &str,
) -> Result<(), Error> {
    let bars: Vec<(Scenario, [Option<&Figures>; 3])> = Scenario::ALL
        .iter()
        .filter_map(|&s| {
            let row = report
                .rows
                .iter()
                .find(|r| r.dataset == name && r.scenario == s)?;
            Some((s, Tool::ALL.map(|t| row.figures(t))))
        })
        .collect();
    let values: Vec<f64> = bars
        .iter()
        .flat_map(|(_, sides)| sides)
        .filter_map(|f| f.map(|f| f.seconds_median))
        .filter(|v| *v > 0.0)
        .collect();
    let low = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        / 2.0;
    let high = values.iter().copied().fold(0.0, f64::max).max(1.0) * 2.0;
    let n = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(10)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("seconds")
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, (scenario, sides)) in bars.iter().enumerate() {
        let x = i as f64;
        chart.draw_series(std::iter::once(Text::new(
            scenario.label(),
            (x + 0.1, low * 1.08),
            ("sans-serif", 12).into_font(),
        )))?;
        for (figures, color, left, right) in [
            (sides[0], A_COLOR, x + 0.05, x + 0.35),
            (sides[1], B_COLOR, x + 0.35, x + 0.65),
            (sides[2], C_COLOR, x + 0.65, x + 0.95),
        ] {
            let Some(f) = figures else { continue };
            if f.failed == f.runs {
                chart.draw_series(std::iter::once(Text::new(
                    "failed",
                    (left, low * 1.6),
                    ("sans-serif", 12).into_font().color(&RED),
                )))?;
                continue;
            }
            chart.draw_series(std::iter::once(Rectangle::new(
                [(left, low * 1.35), (right, f.seconds_median)],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{:.2}", f.seconds_median),
                (left, f.seconds_median * 1.12),
                ("sans-serif", 11).into_font(),
            )))?;
        }
    }
    Ok(())
}
