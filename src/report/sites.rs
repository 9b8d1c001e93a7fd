//! The allocation sites whose live bytes grew per iteration, largest first, as bars: where the
//! leak is, as a line of code.

use plotters::prelude::*;

use super::ReportError;
use super::axis::{Unit, WIDTH, finite};
use crate::results::RunResult;

/// Most sites drawn.
pub const MAX_SITES: usize = 15;
/// Longest site name drawn, characters.
const MAX_NAME: usize = 90;

/// The bars' colour.
const BAR: RGBColor = RGBColor(203, 24, 29);

/// The sites chart, or `None` when the leak verdict named no site.
pub fn chart(result: &RunResult) -> Result<Option<String>, ReportError> {
    let Some(verdicts) = &result.verdicts else {
        return Ok(None);
    };
    let mut sites: Vec<(String, f64)> = verdicts
        .leak
        .sites
        .iter()
        .map(|s| (shorten(&s.site), finite(s.bytes_per_iteration)))
        .collect();
    if sites.is_empty() {
        return Ok(None);
    }
    sites.sort_by(|a, b| b.1.total_cmp(&a.1));
    sites.truncate(MAX_SITES);
    let n = sites.len();
    let max = sites.iter().map(|s| s.1).fold(1.0, f64::max) * 1.1;
    let height = 40 + 26 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        let mut ctx = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(8)
            .build_cartesian_2d(0f64..max, 0f64..n as f64)
            .map_err(ReportError::draw)?;
        ctx.configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(RGBColor(235, 235, 235))
            .x_label_formatter(&|v| format!("{}/iter", Unit::Bytes.label(*v)))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(ReportError::draw)?;
        let rows = sites.iter().enumerate().map(|(k, s)| (n - 1 - k, s));
        ctx.draw_series(rows.clone().map(|(row, s)| {
            Rectangle::new(
                [(0.0, row as f64 + 0.15), (s.1, row as f64 + 0.85)],
                BAR.mix(0.55).filled(),
            )
        }))
        .map_err(ReportError::draw)?;
        ctx.draw_series(rows.map(|(row, s)| {
            Text::new(
                format!("{}  {}/iter", s.0, Unit::Bytes.label(s.1)),
                (max * 0.005, row as f64 + 0.5),
                ("monospace", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Left,
                        plotters::style::text_anchor::VPos::Center,
                    )),
            )
        }))
        .map_err(ReportError::draw)?;
        root.present().map_err(ReportError::draw)?;
    }
    Ok(Some(format!(
        "<div class=\"chart\" data-chart=\"sites\" data-bars=\"{n}\">{svg}</div>"
    )))
}

/// `site` cut to [`MAX_NAME`] characters, keeping its end (the file and line).
fn shorten(site: &str) -> String {
    let count = site.chars().count();
    if count <= MAX_NAME {
        return site.to_string();
    }
    let tail: String = site.chars().skip(count - (MAX_NAME - 1)).collect();
    format!("…{tail}")
}
