//! Charts computed on the server and drawn by `templates/chart.html` and
//! `templates/parallel.html` as SVG: no script and no CDN is needed to read them. This module
//! does the geometry; the templates escape every label.
use super::downsample::{MAX_POINTS, downsample};

/// Okabe-Ito: distinguishable for the common forms of colour blindness. Yellow comes last:
/// it is the hardest to see on white.
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
/// Solid, dashed and dotted: with the eight colours, 24 series stay distinguishable, also
/// for a reader who cannot tell some of the colours apart.
pub const DASHES: [&str; 3] = ["", "7 3", "2 2"];

/// The colour and dash pattern of the `index`-th series.
pub fn style(index: usize) -> (&'static str, &'static str) {
    (PALETTE[index % PALETTE.len()], DASHES[(index / PALETTE.len()) % DASHES.len()])
}

pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 300.0;
pub const LEFT: f64 = 64.0;
pub const RIGHT: f64 = 16.0;
pub const TOP: f64 = 16.0;
pub const BOTTOM: f64 = 48.0;

/// A point of a scatter chart and the text written beside it.
pub type NamedPoint = (f64, f64, String);

/// One named series of `(x, y)` points, drawn in the `style`-th colour and dash (so a run
/// keeps its style on every chart of a page, even where another run has no points).
pub struct Series {
    pub label: String,
    pub style: usize,
    pub points: Vec<(f64, f64)>,
    /// How many points the series has in all: more than `points` when they come
    /// downsampled already.
    pub total: usize,
}

impl Series {
    /// A series of every point it has.
    pub fn whole(label: String, style: usize, points: Vec<(f64, f64)>) -> Self {
        Self { label, style, total: points.len(), points }
    }
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    /// Says so when long series were downsampled, and from how many points.
    pub note: Option<String>,
}

pub struct Line {
    pub label: String,
    pub color: &'static str,
    /// SVG `stroke-dasharray`; empty for a solid line.
    pub dash: &'static str,
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
/// Series longer than `MAX_POINTS` are downsampled, and the chart's note says so.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: Vec<Series>) -> Option<Chart> {
    let longest = series.iter().map(|s| s.total.max(s.points.len())).max().unwrap_or(0);
    let series: Vec<Series> = series
        .into_iter()
        .map(|s| {
            let finite_points: Vec<(f64, f64)> = s.points.into_iter().filter(finite).collect();
            Series { points: downsample(&finite_points, MAX_POINTS), ..s }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let (mut chart, scale) = axes(title, x_label, y_label, series.iter().flat_map(|s| s.points.iter().copied()))?;
    if longest > MAX_POINTS {
        chart.note = Some(format!(
            "Downsampled on the server (largest-triangle-three-buckets, keeping each series' minimum and maximum) \
             to at most {MAX_POINTS} points per series, from up to {longest} points."
        ));
    }
    chart.lines = series
        .into_iter()
        .map(|s| {
            let pixels: Vec<(f64, f64)> = s.points.iter().map(|&p| scale.pixel(p)).collect();
            let mut path = String::with_capacity(pixels.len() * 16);
            for (i, (x, y)) in pixels.iter().enumerate() {
                path.push_str(if i == 0 { "M" } else { " L" });
                path.push_str(&format!("{x:.1},{y:.1}"));
            }
            let dots = if pixels.len() <= 50 { pixels } else { Vec::new() };
            let (color, dash) = style(s.style);
            Line { label: s.label, color, dash, path, dots, labels: Vec::new() }
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
            Line { label, color: PALETTE[index % PALETTE.len()], dash: "", path: String::new(), dots, labels }
        })
        .collect();
    Some(chart)
}

/// One vertical axis of a parallel-coordinates chart: a param or the chosen metric.
pub struct Dimension {
    pub name: String,
    /// One value per run, in the order of the runs: numbers, or text (placed as categories).
    pub values: Vec<Option<serde_json::Value>>,
}

pub struct ParallelChart {
    pub title: String,
    pub axes: Vec<ParallelAxis>,
    /// One line per run, in the runs' order and styles.
    pub lines: Vec<Line>,
}

pub struct ParallelAxis {
    pub at: f64,
    pub name: String,
    /// Labels along the axis, by pixel height.
    pub ticks: Vec<Tick>,
}

impl ParallelChart {
    pub fn width(&self) -> f64 {
        WIDTH
    }
    pub fn height(&self) -> f64 {
        HEIGHT
    }
    pub fn plot_top(&self) -> f64 {
        TOP + 16.0
    }
    pub fn plot_bottom(&self) -> f64 {
        HEIGHT - BOTTOM
    }
}

/// Every run as a line across one axis per dimension, each axis scaled to its own values
/// (logarithmic when they are positive and span more than two decades, as learning rates do).
/// `None` with fewer than two dimensions or no run.
pub fn parallel_chart(title: &str, runs: &[String], dimensions: Vec<Dimension>) -> Option<ParallelChart> {
    if dimensions.len() < 2 || runs.is_empty() {
        return None;
    }
    let (top, bottom) = (TOP + 16.0, HEIGHT - BOTTOM);
    let gap = (WIDTH - 2.0 * LEFT) / (dimensions.len() - 1) as f64;
    let mut heights = vec![Vec::with_capacity(dimensions.len()); runs.len()];
    let mut axes = Vec::with_capacity(dimensions.len());
    for (index, dimension) in dimensions.into_iter().enumerate() {
        let at = LEFT + gap * index as f64;
        let place = AxisPlacement::of(&dimension.values);
        let pixel = |fraction: f64| bottom - fraction * (bottom - top);
        for (run, value) in dimension.values.iter().enumerate() {
            heights[run].push(value.as_ref().and_then(|v| place.fraction(v)).map(|f| (at, pixel(f))));
        }
        let ticks = place.ticks().into_iter().map(|(fraction, label)| Tick { at: pixel(fraction), label }).collect();
        axes.push(ParallelAxis { at, name: dimension.name, ticks });
    }
    let lines = runs
        .iter()
        .zip(heights)
        .enumerate()
        .map(|(index, (label, points))| {
            // A run without a value on an axis has a gap there.
            let mut path = String::new();
            let mut joined = false;
            for point in points {
                match point {
                    Some((x, y)) => {
                        path.push_str(if joined { " L" } else { " M" });
                        path.push_str(&format!("{x:.1},{y:.1}"));
                        joined = true;
                    }
                    None => joined = false,
                }
            }
            let (color, dash) = style(index);
            Line {
                label: label.clone(),
                color,
                dash,
                path: path.trim_start().to_owned(),
                dots: Vec::new(),
                labels: Vec::new(),
            }
        })
        .collect();
    Some(ParallelChart { title: title.to_owned(), axes, lines })
}

/// Where values fall on one parallel axis, as a fraction of its height.
enum AxisPlacement {
    Linear(f64, f64),
    Log(f64, f64),
    /// Text values, in sorted order, evenly spaced.
    Categories(Vec<String>),
}

impl AxisPlacement {
    fn of(values: &[Option<serde_json::Value>]) -> Self {
        let numbers: Vec<f64> =
            values.iter().flatten().filter_map(serde_json::Value::as_f64).filter(|v| v.is_finite()).collect();
        let texts: std::collections::BTreeSet<String> =
            values.iter().flatten().filter(|v| !v.is_number()).map(super::view::plain).collect();
        if !texts.is_empty() {
            return Self::Categories(texts.into_iter().collect());
        }
        let (min, max) = bounds(numbers.iter().copied());
        if min > 0.0 && max / min > 100.0 { Self::Log(min.log10(), max.log10()) } else { Self::Linear(min, max) }
    }

    fn fraction(&self, value: &serde_json::Value) -> Option<f64> {
        let spread = |v: f64, lo: f64, hi: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        match self {
            Self::Linear(lo, hi) => value.as_f64().filter(|v| v.is_finite()).map(|v| spread(v, *lo, *hi)),
            Self::Log(lo, hi) => value.as_f64().filter(|v| *v > 0.0).map(|v| spread(v.log10(), *lo, *hi)),
            Self::Categories(names) => {
                let at = names.iter().position(|name| *name == super::view::plain(value))?;
                Some(if names.len() > 1 { at as f64 / (names.len() - 1) as f64 } else { 0.5 })
            }
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match self {
            Self::Linear(lo, hi) if hi > lo => vec![(0.0, tick_label(*lo)), (1.0, tick_label(*hi))],
            Self::Linear(lo, _) if lo.is_finite() => vec![(0.5, tick_label(*lo))],
            Self::Linear(..) => Vec::new(),
            Self::Log(lo, hi) => vec![(0.0, tick_label(10f64.powf(*lo))), (1.0, tick_label(10f64.powf(*hi)))],
            Self::Categories(names) => names
                .iter()
                .enumerate()
                .map(|(at, name)| {
                    (if names.len() > 1 { at as f64 / (names.len() - 1) as f64 } else { 0.5 }, name.clone())
                })
                .collect(),
        }
    }
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
        note: None,
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

pub fn tick_label(value: f64) -> String {
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
                Series::whole("train".into(), 0, vec![(1.0, 2.0), (2.0, f64::NAN), (3.0, 0.5)]),
                Series::whole("val".into(), 1, vec![(3.0, 0.7)]),
                Series::whole("none".into(), 2, vec![]),
            ],
        )
        .expect("chart");
        assert_eq!(chart.lines.len(), 2, "a series without points is left out");
        assert_eq!(chart.lines[0].dots.len(), 2);
        for line in &chart.lines {
            for &(x, y) in &line.dots {
                assert!((LEFT..=WIDTH - RIGHT).contains(&x) && (TOP..=HEIGHT - BOTTOM).contains(&y), "({x}, {y})");
            }
        }
        assert_ne!(chart.lines[0].color, chart.lines[1].color);
        assert!(line_chart("empty", "x", "y", vec![Series::whole("a".into(), 0, vec![])]).is_none());
    }

    #[test]
    fn long_series_are_downsampled_and_the_chart_says_so() {
        let points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i as f64).sin())).collect();
        let chart = line_chart("Loss", "step", "loss", vec![Series::whole("a".into(), 0, points)]).expect("chart");
        assert!(chart.note.as_deref().is_some_and(|note| note.contains("10000 points")), "{:?}", chart.note);
        assert!(chart.lines[0].path.matches('L').count() < 1_000);
        let short = line_chart("Loss", "step", "loss", vec![Series::whole("a".into(), 0, vec![(0.0, 1.0)])]);
        assert!(short.expect("chart").note.is_none());
    }

    #[test]
    fn twenty_four_series_get_distinct_styles() {
        let styles: std::collections::HashSet<_> = (0..24).map(style).collect();
        assert_eq!(styles.len(), 24);
    }

    #[test]
    fn parallel_axes_place_numbers_logs_and_categories_and_leave_gaps() {
        use serde_json::json;
        let runs = vec!["#1".to_owned(), "#2".to_owned()];
        let dimensions = vec![
            Dimension { name: "learning_rate".into(), values: vec![Some(json!(0.0001)), Some(json!(0.1))] },
            Dimension { name: "optimizer".into(), values: vec![Some(json!("adam")), Some(json!("sgd"))] },
            Dimension { name: "epochs".into(), values: vec![Some(json!(2)), None] },
            Dimension { name: "accuracy".into(), values: vec![Some(json!(0.9)), Some(json!(0.5))] },
        ];
        let chart = parallel_chart("Params", &runs, dimensions).expect("chart");
        assert_eq!(chart.axes.len(), 4);
        assert_eq!(chart.axes[0].ticks[0].label, "1.0e-4", "a learning rate axis is logarithmic");
        assert_eq!(chart.axes[1].ticks.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(), ["adam", "sgd"]);
        assert_eq!(chart.lines[0].path.matches('M').count(), 1, "run 1 has every value: one line");
        assert_eq!(chart.lines[1].path.matches('M').count(), 2, "run 2 has no epochs: a gap");
        assert!(parallel_chart("Params", &runs, Vec::new()).is_none());
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
