//! Charts as inline SVG, drawn on the server by plotters: metric curves
//! (one or several runs, with exponential smoothing), grouped bars
//! (sensitivity per augmentation), and for an ablation the parallel
//! coordinates of its runs and the trade-off of two columns across its
//! groups. No script, nothing fetched.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

/// One axis of a parallel-coordinates chart: a name and each run's value
/// (a number, or a category such as a config value; `None`: the run has none).
pub struct Axis {
    pub name: String,
    pub values: Vec<Option<AxisValue>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AxisValue {
    Number(f64),
    Category(String),
}

/// Where each run's value lies on `axis`, in [0, 1] (categories evenly
/// spaced in sorted order, numbers by min and max), and the axis' tick labels.
fn place(axis: &Axis) -> (Vec<Option<f64>>, Vec<(f64, String)>) {
    let numbers: Vec<f64> = axis.values.iter().filter_map(|v| match v {
        Some(AxisValue::Number(x)) if x.is_finite() => Some(*x),
        _ => None,
    }).collect();
    let mut categories: Vec<String> = axis.values.iter().filter_map(|v| match v {
        Some(AxisValue::Category(c)) => Some(c.clone()),
        _ => None,
    }).collect();
    categories.sort();
    categories.dedup();
    if !categories.is_empty() {
        let at = |c: &str| {
            let i = categories.iter().position(|x| x == c).unwrap_or(0);
            if categories.len() == 1 { 0.5 } else { i as f64 / (categories.len() - 1) as f64 }
        };
        let placed = axis.values.iter().map(|v| match v {
            Some(AxisValue::Category(c)) => Some(at(c)),
            _ => None,
        }).collect();
        return (placed, categories.iter().map(|c| (at(c), crate::tables::shortened(c, 18))).collect());
    }
    let (lo, hi) = numbers.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let placed = axis.values.iter().map(|v| match v {
        Some(AxisValue::Number(x)) if x.is_finite() => Some(if hi > lo { (x - lo) / span } else { 0.5 }),
        _ => None,
    }).collect();
    let ticks = if numbers.is_empty() { Vec::new() } else if hi > lo { vec![(0.0, format!("{lo:.3}")), (1.0, format!("{hi:.3}"))] } else { vec![(0.5, format!("{lo:.3}"))] };
    (placed, ticks)
}

/// Parallel coordinates: one line per run across `axes`, coloured by
/// `colour` (a value per run, low to high on the viridis scale; grey where
/// a run has none), as an SVG string. The axis names take the top line, so
/// the page gives the chart's title (`title` is for the empty case).
pub fn parallel_coordinates(title: &str, axes: &[Axis], colour: &[Option<f64>], width: u32, height: u32) -> String {
    let runs = axes.first().map_or(0, |a| a.values.len());
    if axes.len() < 2 || runs == 0 {
        return empty(title, "needs two axes and a run");
    }
    let placed: Vec<(Vec<Option<f64>>, Vec<(f64, String)>)> = axes.iter().map(place).collect();
    let known: Vec<f64> = colour.iter().flatten().copied().filter(|v| v.is_finite()).collect();
    let (c_lo, c_hi) = known.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let n = axes.len() as f64;
        let chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_top(24)
            .margin_left(60)
            .margin_right(60)
            .x_label_area_size(24)
            .build_cartesian_2d(-0.05..(n - 1.0) + 0.05, -0.08..1.08);
        if let Ok(mut chart) = chart {
            for run in 0..runs {
                let points: Vec<(f64, f64)> = placed.iter().enumerate().filter_map(|(a, (p, _))| p[run].map(|y| (a as f64, y))).collect();
                let style = match colour.get(run).copied().flatten().filter(|v| v.is_finite()) {
                    Some(v) => ViridisRGB::get_color_normalized(v, c_lo, if c_hi > c_lo { c_hi } else { c_lo + 1.0 }).stroke_width(2),
                    None => RGBColor(160, 160, 160).stroke_width(1),
                };
                let _ = chart.draw_series(LineSeries::new(points, style));
            }
            for (a, (axis, (_, ticks))) in axes.iter().zip(&placed).enumerate() {
                let x = a as f64;
                let _ = chart.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, 1.0)], BLACK.stroke_width(1))));
                let _ = chart.draw_series(std::iter::once(Text::new(crate::tables::shortened(&axis.name, 22), (x, 1.07), ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)))));
                for (y, label) in ticks {
                    let _ = chart.draw_series(std::iter::once(Text::new(label.clone(), (x, *y), ("sans-serif", 11).into_font().color(&BLACK.mix(0.8)).pos(Pos::new(HPos::Left, VPos::Center)))));
                }
            }
        }
        let _ = root.present();
    }
    svg
}

/// One point of a trade-off chart: a group's mean and std on both columns.
pub struct TradeOff {
    pub label: String,
    pub x: (f64, f64),
    pub y: (f64, f64),
}

/// Groups as points of column `x_name` against column `y_name`, with std
/// bars both ways; the best mean on each column (highest) drawn filled and
/// larger, every point labelled with its group.
pub fn trade_off(title: &str, x_name: &str, y_name: &str, points: &[TradeOff], width: u32, height: u32) -> String {
    if points.is_empty() {
        return empty(title, "no group has both columns");
    }
    let range = |f: &dyn Fn(&TradeOff) -> (f64, f64)| {
        let (lo, hi) = points.iter().map(f).fold((f64::MAX, f64::MIN), |(a, b), (m, s)| (a.min(m - s), b.max(m + s)));
        let pad = ((hi - lo) * 0.1).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    let best = |f: &dyn Fn(&TradeOff) -> f64| points.iter().map(f).fold(f64::MIN, f64::max);
    let (best_x, best_y) = (best(&|p| p.x.0), best(&|p| p.y.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(range(&|p| p.x), range(&|p| p.y));
        if let Ok(mut chart) = chart {
            let _ = chart.configure_mesh().x_desc(x_name).y_desc(y_name).light_line_style(WHITE.mix(0.0)).draw();
            for (i, p) in points.iter().enumerate() {
                let colour = PALETTE[i % PALETTE.len()];
                let _ = chart.draw_series(std::iter::once(ErrorBar::new_vertical(p.x.0, p.y.0 - p.y.1, p.y.0, p.y.0 + p.y.1, colour.stroke_width(1), 6)));
                let _ = chart.draw_series(std::iter::once(ErrorBar::new_horizontal(p.y.0, p.x.0 - p.x.1, p.x.0, p.x.0 + p.x.1, colour.stroke_width(1), 6)));
                let is_best = p.x.0 == best_x || p.y.0 == best_y;
                let marker = if is_best { Circle::new((p.x.0, p.y.0), 6, colour.filled()) } else { Circle::new((p.x.0, p.y.0), 4, colour.stroke_width(2)) };
                let _ = chart.draw_series(std::iter::once(marker));
                let label = if is_best { format!("{} (best)", p.label) } else { p.label.clone() };
                let _ = chart.draw_series(std::iter::once(Text::new(crate::tables::shortened(&label, 28), (p.x.0, p.y.0), ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Bottom)))));
            }
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

    #[test]
    fn parallel_coordinates_draw_a_line_per_run_with_category_and_number_axes() {
        let aware = Axis { name: "method.aware".into(), values: ["[]", "[augself]", "[cassle]"].iter().map(|c| Some(AxisValue::Category(c.to_string()))).collect() };
        let linear = Axis { name: "linear/shape".into(), values: vec![Some(AxisValue::Number(60.0)), Some(AxisValue::Number(70.0)), None] };
        let svg = parallel_coordinates("runs", &[aware, linear], &[Some(60.0), Some(70.0), None], 600, 300);
        // A line per run (two coloured by their value, the third grey: it has
        // none) and one per axis.
        assert_eq!(svg.matches("<polyline").count(), 3 + 2, "{svg}");
        assert_eq!(svg.matches("stroke-width=\"2\" points").count(), 2, "{svg}");
        assert!(svg.contains("[augself]") && svg.contains("70.000") && svg.contains("60.000"), "{svg}");
        let placed = place(&Axis { name: "x".into(), values: vec![Some(AxisValue::Number(2.0)), Some(AxisValue::Number(4.0)), Some(AxisValue::Number(3.0))] }).0;
        assert_eq!(placed, vec![Some(0.0), Some(1.0), Some(0.5)]);
    }

    #[test]
    fn the_trade_off_marks_the_best_means() {
        let points = [
            TradeOff { label: "simclr".into(), x: (80.0, 1.0), y: (40.0, 2.0) },
            TradeOff { label: "augself".into(), x: (75.0, 1.5), y: (60.0, 1.0) },
            TradeOff { label: "cassle".into(), x: (70.0, 0.5), y: (50.0, 3.0) },
        ];
        let svg = trade_off("trade-off", "linear/shape", "linear/colour", &points, 500, 400);
        assert!(svg.contains("simclr (best)") && svg.contains("augself (best)") && !svg.contains("cassle (best)"), "{svg}");
        // Best on a column: filled, radius 6; the other group: an outline, radius 4.
        assert_eq!((svg.matches("r=\"6\"").count(), svg.matches("r=\"4\"").count()), (2, 1), "{svg}");
    }
}
