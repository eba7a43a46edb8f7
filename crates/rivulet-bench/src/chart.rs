//! An SVG chart of latency against throughput, one line per system and durability level.
//!
//! Small enough to write directly: a scatter with connecting lines, a linear x axis
//! (records/s), a logarithmic y axis (milliseconds) and a legend. No plotting crate needed.

use std::fmt::Write as _;

/// One line of the chart.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend text, e.g. `rivulet D1`.
    pub label: String,
    /// Index into the palette: the same system keeps its colour across durability levels.
    pub color: usize,
    /// Dashed line (used for D1).
    pub dashed: bool,
    /// (records/s, milliseconds) points; drawn in order of throughput.
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const PALETTE: [&str; 6] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
/// Most series one chart draws (the legend has room for this many).
const SERIES_MAX: usize = 16;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" step for about `ticks` ticks over `range`.
fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn format_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn format_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The plot area and its scales: linear x from 0 to `x_max`, logarithmic y over the decades
/// `lo..=hi` (powers of ten).
struct Plot {
    x_max: f64,
    lo: f64,
    hi: f64,
    w: f64,
    h: f64,
}

impl Plot {
    /// Scales that fit every finite point with a positive y.
    fn fit(series: &[Series]) -> Plot {
        let points = || {
            series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
        };
        let x_max = points().map(|(x, _)| x).fold(0.0, f64::max).max(1.0) * 1.05;
        let y_min = points().map(|(_, y)| y).fold(f64::INFINITY, f64::min);
        let y_max = points().map(|(_, y)| y).fold(0.0, f64::max);
        let (lo, hi) = if y_min.is_finite() && y_max > 0.0 {
            (
                y_min.log10().floor(),
                y_max.log10().ceil().max(y_min.log10().floor() + 1.0),
            )
        } else {
            (-1.0, 3.0)
        };
        Plot {
            x_max,
            lo,
            hi,
            w: WIDTH - LEFT - RIGHT,
            h: HEIGHT - TOP - BOTTOM,
        }
    }

    fn sx(&self, x: f64) -> f64 {
        LEFT + x / self.x_max * self.w
    }

    fn sy(&self, y: f64) -> f64 {
        TOP + self.h - (y.max(10f64.powf(self.lo)).log10() - self.lo) / (self.hi - self.lo) * self.h
    }
}

/// Renders `series` as an SVG document titled `title`, y being `y_label`.
pub(crate) fn render(title: &str, subtitle: &str, y_label: &str, series: &[Series]) -> String {
    let series = &series[..series.len().min(SERIES_MAX)];
    let plot = Plot::fit(series);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="16" font-weight="bold">{}</text>"#,
        LEFT,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="40" fill="#555">{}</text>"##,
        LEFT,
        escape(subtitle)
    );
    grid(&mut svg, &plot, y_label);
    for (i, s) in series.iter().enumerate() {
        line(&mut svg, &plot, i, s);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The grid, the axes and their labels.
fn grid(svg: &mut String, plot: &Plot, y_label: &str) {
    let (plot_w, plot_h) = (plot.w, plot.h);
    let step = nice_step(plot.x_max, 6.0);
    let mut x = 0.0;
    let mut ticks = 0;
    while x <= plot.x_max && ticks <= 20 {
        let px = plot.sx(x);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            format_rate(x)
        );
        x += step;
        ticks += 1;
    }
    let mut decade = plot.lo;
    while decade <= plot.hi {
        let value = 10f64.powf(decade);
        let py = plot.sy(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#d0d0d0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            py + 4.0,
            format_ms(value)
        );
        decade += 1.0;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">throughput, records/s</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{} (log scale)</text>"#,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
}

/// Series `i`: its line, its points and its legend entry.
fn line(svg: &mut String, plot: &Plot, i: usize, s: &Series) {
    let color = PALETTE[s.color % PALETTE.len()];
    let mut pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let dash = if s.dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    if pts.len() > 1 {
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", plot.sx(x), plot.sy(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
    }
    for &(x, y) in &pts {
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}"><title>{}: {} records/s, {:.2} ms</title></circle>"#,
            plot.sx(x),
            plot.sy(y),
            escape(&s.label),
            format_rate(x),
            y
        );
    }
    let ly = TOP + 10.0 + i as f64 * 20.0;
    let lx = WIDTH - RIGHT + 20.0;
    let _ = writeln!(
        svg,
        r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><circle cx="{:.1}" cy="{ly}" r="4" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
        lx + 30.0,
        lx + 15.0,
        lx + 38.0,
        ly + 4.0,
        escape(&s.label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_point_and_label() {
        let series = vec![
            Series {
                label: "rivulet D0".into(),
                color: 0,
                dashed: false,
                points: vec![(100_000.0, 1.5), (300_000.0, 900.0), (200_000.0, 2.5)],
            },
            Series {
                label: "nats <D1>".into(),
                color: 1,
                dashed: true,
                points: vec![(50_000.0, 4.0)],
            },
        ];
        let svg = render("t", "s", "end-to-end p99, ms", &series);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<circle").count(),
            4 + 2,
            "points plus legend markers"
        );
        assert!(svg.contains("nats &lt;D1&gt;"));
        assert!(svg.contains("stroke-dasharray"));
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "a single point draws no line"
        );
    }

    #[test]
    fn nice_steps_are_round() {
        assert_eq!(nice_step(330_000.0, 6.0), 100_000.0);
        assert_eq!(nice_step(90.0, 6.0), 20.0);
        assert_eq!(nice_step(1.0, 4.0), 0.5);
    }
}
