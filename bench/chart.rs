//! The PNG beside results.json: one panel per dataset, A and B side by side per scenario, median
//! seconds on a log scale (an initial mirror and a no-op differ by orders of magnitude).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Scenario;
use crate::summary::{Figures, Report};

const FONT_FILES: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const A_COLOR: RGBColor = RGBColor(150, 150, 150);
const B_COLOR: RGBColor = RGBColor(31, 119, 180);

type Error = Box<dyn std::error::Error>;

pub fn draw(path: &Path, report: &Report) -> Result<(), Error> {
    register_font()?;
    let panels = report.datasets.len().max(1);
    let cols = panels.min(2);
    let rows = panels.div_ceil(cols);
    let width = 620 * cols as u32;
    let height = 80 + 340 * rows as u32;
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(80);
    title.draw(&Text::new(
        "backlog-mirror sync (B, blue) vs the article's shell steps (A, grey)",
        (16, 12),
        ("sans-serif", 22).into_font(),
    ))?;
    title.draw(&Text::new(
        format!(
            "median wall seconds of {} rounds, log scale; {}",
            report.rounds,
            report.machine.describe()
        ),
        (16, 44),
        ("sans-serif", 13).into_font(),
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
    let bars: Vec<(Scenario, Option<&Figures>, Option<&Figures>)> = Scenario::ALL
        .iter()
        .filter_map(|&s| {
            let row = report
                .rows
                .iter()
                .find(|r| r.dataset == name && r.scenario == s)?;
            Some((s, row.a.as_ref(), row.b.as_ref()))
        })
        .collect();
    let values: Vec<f64> = bars
        .iter()
        .flat_map(|(_, a, b)| [a, b])
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
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d((0..bars.len()).into_segmented(), (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("seconds")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map_or(String::new(), |b| b.0.label().into()),
            _ => String::new(),
        })
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, (_, a, b)) in bars.iter().enumerate() {
        for (figures, color, left, right) in [
            (
                a,
                A_COLOR,
                SegmentValue::Exact(i),
                SegmentValue::CenterOf(i),
            ),
            (
                b,
                B_COLOR,
                SegmentValue::CenterOf(i),
                SegmentValue::Exact(i + 1),
            ),
        ] {
            let Some(f) = figures else { continue };
            if f.failed == f.runs {
                chart.draw_series(std::iter::once(Text::new(
                    "failed",
                    (left, low * 1.5),
                    ("sans-serif", 12).into_font().color(&RED),
                )))?;
                continue;
            }
            chart.draw_series(std::iter::once(Rectangle::new(
                [(left.clone(), low), (right, f.seconds_median)],
                color.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{:.2}", f.seconds_median),
                (left, f.seconds_median * 1.15),
                ("sans-serif", 11).into_font(),
            )))?;
        }
    }
    Ok(())
}
