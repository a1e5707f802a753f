//! Line charts computed on the server and drawn by `templates/chart.html` as SVG: no script
//! and no CDN is needed to read them. This module does the geometry; the template escapes
//! every label.

/// Okabe-Ito: distinguishable for the common forms of colour blindness.
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];

pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 300.0;
pub const LEFT: f64 = 64.0;
pub const RIGHT: f64 = 16.0;
pub const TOP: f64 = 16.0;
pub const BOTTOM: f64 = 48.0;

/// A point of a scatter chart and the text written beside it.
pub type NamedPoint = (f64, f64, String);

/// One named series of `(x, y)` points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
}

pub struct Line {
    pub label: String,
    pub color: &'static str,
    /// SVG path data in pixels.
    pub path: String,
    /// Points drawn as dots, for series short enough that each point matters.
    pub dots: Vec<(f64, f64)>,
    /// Text beside each dot (a scatter chart names its points).
    pub labels: Vec<NamedPoint>,
}

pub struct Tick {
    /// Pixel position along the axis.
    pub at: f64,
    pub label: String,
}

impl Chart {
    pub fn width(&self) -> f64 {
        WIDTH
    }
    pub fn height(&self) -> f64 {
        HEIGHT
    }
    pub fn plot_left(&self) -> f64 {
        LEFT
    }
    pub fn plot_right(&self) -> f64 {
        WIDTH - RIGHT
    }
    pub fn plot_top(&self) -> f64 {
        TOP
    }
    pub fn plot_bottom(&self) -> f64 {
        HEIGHT - BOTTOM
    }
    pub fn x_label_at(&self) -> (f64, f64) {
        ((LEFT + WIDTH - RIGHT) / 2.0, HEIGHT - 8.0)
    }
}

/// A chart of `series` with shared axes, or `None` when there is nothing finite to draw.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: Vec<Series>) -> Option<Chart> {
    let (mut chart, scale) = axes(title, x_label, y_label, series.iter().flat_map(|s| s.points.iter().copied()))?;
    chart.lines = series
        .into_iter()
        .enumerate()
        .map(|(index, s)| {
            let pixels: Vec<(f64, f64)> = s.points.iter().filter(|p| finite(p)).map(|&p| scale.pixel(p)).collect();
            let mut path = String::with_capacity(pixels.len() * 16);
            for (i, (x, y)) in pixels.iter().enumerate() {
                path.push_str(if i == 0 { "M" } else { " L" });
                path.push_str(&format!("{x:.1},{y:.1}"));
            }
            let dots = if pixels.len() <= 50 { pixels } else { Vec::new() };
            Line { label: s.label, color: PALETTE[index % PALETTE.len()], path, dots, labels: Vec::new() }
        })
        .collect();
    Some(chart)
}

/// Named points in groups (one colour and one legend entry per group), not joined.
pub fn scatter_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    groups: Vec<(String, Vec<NamedPoint>)>,
) -> Option<Chart> {
    let all = groups.iter().flat_map(|(_, points)| points.iter().map(|&(x, y, _)| (x, y)));
    let (mut chart, scale) = axes(title, x_label, y_label, all)?;
    chart.lines = groups
        .into_iter()
        .enumerate()
        .map(|(index, (label, points))| {
            let labels: Vec<NamedPoint> = points
                .into_iter()
                .filter(|&(x, y, _)| finite(&(x, y)))
                .map(|(x, y, text)| {
                    let (px, py) = scale.pixel((x, y));
                    (px, py, text)
                })
                .collect();
            let dots = labels.iter().map(|&(x, y, _)| (x, y)).collect();
            Line { label, color: PALETTE[index % PALETTE.len()], path: String::new(), dots, labels }
        })
        .collect();
    Some(chart)
}

fn finite(&(x, y): &(f64, f64)) -> bool {
    x.is_finite() && y.is_finite()
}

/// Maps values to pixels inside the plot.
struct Scale {
    x: (f64, f64),
    y: (f64, f64),
}

impl Scale {
    fn pixel(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (WIDTH - LEFT - RIGHT),
            HEIGHT - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (HEIGHT - TOP - BOTTOM),
        )
    }
}

/// An empty chart whose axes cover `points`, and its scale; `None` without a finite point.
fn axes(title: &str, x_label: &str, y_label: &str, points: impl Iterator<Item = (f64, f64)>) -> Option<(Chart, Scale)> {
    let all: Vec<(f64, f64)> = points.filter(finite).collect();
    if all.is_empty() {
        return None;
    }
    let (x_min, x_max) = bounds(all.iter().map(|p| p.0));
    let (y_min, y_max) = bounds(all.iter().map(|p| p.1));
    let x_ticks = nice_ticks(x_min, x_max, 6);
    let y_ticks = nice_ticks(y_min, y_max, 5);
    let scale = Scale { x: span(&x_ticks, x_min, x_max), y: span(&y_ticks, y_min, y_max) };
    let chart = Chart {
        title: title.to_owned(),
        x_label: x_label.to_owned(),
        y_label: y_label.to_owned(),
        lines: Vec::new(),
        x_ticks: x_ticks.iter().map(|&v| Tick { at: scale.pixel((v, scale.y.0)).0, label: tick_label(v) }).collect(),
        y_ticks: y_ticks.iter().map(|&v| Tick { at: scale.pixel((scale.x.0, v)).1, label: tick_label(v) }).collect(),
    };
    Some((chart, scale))
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// The axis range: the outer ticks, widened when all values are equal.
fn span(ticks: &[f64], min: f64, max: f64) -> (f64, f64) {
    let lo = ticks.first().copied().unwrap_or(min).min(min);
    let hi = ticks.last().copied().unwrap_or(max).max(max);
    if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) }
}

/// Round tick values (1, 2 or 5 times a power of ten) covering `min..=max`.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite()) {
        return Vec::new();
    }
    if max <= min {
        return vec![min];
    }
    let raw = (max - min) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let first = (min / step).floor() * step;
    let mut ticks = Vec::new();
    let mut value = first;
    while value <= max + step * 0.5 && ticks.len() < 50 {
        ticks.push(if value.abs() < step * 1e-9 { 0.0 } else { value });
        value += step;
    }
    ticks
}

fn tick_label(value: f64) -> String {
    if value != 0.0 && (value.abs() >= 1e5 || value.abs() < 1e-3) {
        format!("{value:.1e}")
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let ticks = nice_ticks(0.913, 0.987, 5);
        assert!(ticks[0] <= 0.913 && *ticks.last().expect("ticks") >= 0.987 - 0.01, "{ticks:?}");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2.0), "2");
        assert_eq!(tick_label(150_000.0), "1.5e5");
    }

    #[test]
    fn lines_stay_inside_the_plot_and_skip_non_finite_points() {
        let chart = line_chart(
            "Loss",
            "step",
            "loss",
            vec![
                Series { label: "train".into(), points: vec![(1.0, 2.0), (2.0, f64::NAN), (3.0, 0.5)] },
                Series { label: "val".into(), points: vec![(3.0, 0.7)] },
            ],
        )
        .expect("chart");
        assert_eq!(chart.lines.len(), 2);
        assert_eq!(chart.lines[0].dots.len(), 2);
        for line in &chart.lines {
            for &(x, y) in &line.dots {
                assert!((LEFT..=WIDTH - RIGHT).contains(&x) && (TOP..=HEIGHT - BOTTOM).contains(&y), "({x}, {y})");
            }
        }
        assert_ne!(chart.lines[0].color, chart.lines[1].color);
        assert!(line_chart("empty", "x", "y", vec![Series { label: "a".into(), points: vec![] }]).is_none());
    }

    #[test]
    fn a_scatter_names_every_point_and_joins_none() {
        let groups = vec![
            ("trained".to_owned(), vec![(488.0, 0.97, "#1".to_owned())]),
            ("pruned".to_owned(), vec![(70.0, 0.96, "#2".to_owned()), (40.0, f64::NAN, "#3".to_owned())]),
        ];
        let chart = scatter_chart("Accuracy against size", "kB", "accuracy", groups).expect("chart");
        assert!(chart.lines.iter().all(|line| line.path.is_empty()));
        assert_eq!(chart.lines[1].labels.len(), 1, "a point without a value is left out");
        let (x, y, text) = &chart.lines[0].labels[0];
        assert_eq!(text, "#1");
        assert!((LEFT..=WIDTH - RIGHT).contains(x) && (TOP..=HEIGHT - BOTTOM).contains(y));
    }
}
