//! Charts as inline SVG, drawn on the server by plotters: metric curves
//! (one or several runs, with exponential smoothing) and grouped bars
//! (sensitivity per augmentation). No script, nothing fetched.

use plotters::prelude::*;

/// Colours of successive series (colour-blind safe, Okabe-Ito).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// Exponential moving average with weight `alpha` on the past (0: none),
/// debiased at the start as TensorBoard does.
pub fn smooth(values: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    if alpha <= 0.0 {
        return values.to_vec();
    }
    let mut avg = 0.0;
    let mut weight = 0.0;
    values
        .iter()
        .map(|&(x, y)| {
            avg = alpha * avg + (1.0 - alpha) * y;
            weight = alpha * weight + (1.0 - alpha);
            (x, avg / weight)
        })
        .collect()
}

/// The paragraph shown instead of an empty chart, its title escaped (it
/// may be a metric key a plugin chose). plotters escapes the SVG's own text.
fn empty(title: &str, what: &str) -> String {
    maud::html! { p.empty { (title) ": " (what) } }.into_string()
}

/// A line chart of named series of (step, value) points, as an SVG string.
pub fn lines(title: &str, series: &[(String, Vec<(f64, f64)>)], width: u32, height: u32) -> String {
    let mut svg = String::new();
    let points = series.iter().flat_map(|(_, p)| p.iter()).filter(|(_, y)| y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return empty(title, "no points yet");
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad));
        if let Ok(mut chart) = chart {
            let _ = chart.configure_mesh().x_desc("step").light_line_style(WHITE.mix(0.0)).draw();
            for (i, (name, pts)) in series.iter().enumerate() {
                let colour = PALETTE[i % PALETTE.len()];
                let drawn = chart.draw_series(LineSeries::new(pts.iter().copied().filter(|(_, y)| y.is_finite()), colour.stroke_width(2)));
                if let Ok(d) = drawn {
                    d.label(name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
                }
            }
            if series.len() > 1 {
                let _ = chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK.mix(0.3))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw();
            }
        }
        let _ = root.present();
    }
    svg
}

/// Grouped bars: for each category, one bar per named series.
pub fn bars(title: &str, categories: &[String], series: &[(String, Vec<Option<f64>>)], width: u32, height: u32) -> String {
    let mut svg = String::new();
    let values: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().flatten().copied()).collect();
    if values.is_empty() || categories.is_empty() {
        return empty(title, "no values");
    }
    let lo = values.iter().copied().fold(0.0f64, f64::min);
    let hi = values.iter().copied().fold(0.0f64, f64::max).max(lo + 1e-6);
    let n = categories.len();
    let k = series.len().max(1);
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..n as f64, lo..hi * 1.1);
        if let Ok(mut chart) = chart {
            let labels = categories.to_vec();
            let _ = chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n * 2 + 1)
                .x_label_formatter(&|x| {
                    let i = x.floor() as usize;
                    if (x - i as f64 - 0.5).abs() < 1e-6 && i < labels.len() { labels[i].clone() } else { String::new() }
                })
                .draw();
            for (j, (name, vals)) in series.iter().enumerate() {
                let colour = PALETTE[j % PALETTE.len()];
                let width = 0.8 / k as f64;
                let rects = vals.iter().enumerate().filter_map(|(i, v)| {
                    let v = (*v)?;
                    let left = i as f64 + 0.1 + j as f64 * width;
                    Some(Rectangle::new([(left, 0.0), (left + width * 0.9, v)], colour.filled()))
                });
                if let Ok(d) = chart.draw_series(rects) {
                    d.label(name.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
                }
            }
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperRight)
                .draw();
        }
        let _ = root.present();
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_debiased_and_zero_is_identity() {
        let pts = vec![(0.0, 1.0), (1.0, 3.0)];
        assert_eq!(smooth(&pts, 0.0), pts);
        let s = smooth(&pts, 0.5);
        assert!((s[0].1 - 1.0).abs() < 1e-12, "the first point is itself");
        assert!((s[1].1 - (0.25 + 1.5) / 0.75).abs() < 1e-12);
    }

    #[test]
    fn charts_are_svg_with_their_series() {
        let svg = lines("loss", &[("run 1".into(), vec![(0.0, 2.0), (1.0, 1.0)]), ("run 2".into(), vec![(0.0, 3.0)])], 400, 200);
        assert!(svg.starts_with("<svg") && svg.contains("run 2") && svg.contains("<polyline"), "{svg}");
        let svg = bars("sensitivity", &["color".into()], &[("final".into(), vec![Some(0.4)])], 400, 200);
        assert!(svg.contains("<rect") && svg.contains("color"), "{svg}");
    }
}
