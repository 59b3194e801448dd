//! Charts as SVG markup, drawn on the server: bars over time, and bars stacked per series.
//! Numbers come from the store; every label is escaped here, so the markup is safe to embed.

use std::fmt::Write as _;

/// The series colours, in the order of the stylesheet's `.s0` … `.s7` legend swatches.
pub(crate) const PALETTE: [&str; 8] = [
    "#0969da", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#6e7781", "#bc4c00",
];

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

pub(crate) use crate::domain::text::escape_html as escape;

/// Stacked bars: one bar per slot (`slots` are its labels), one colour per series
/// (`series`: name and a value per slot). `title` names the chart for screen readers.
pub(crate) fn stacked(title: &str, slots: &[String], series: &[(String, Vec<i64>)]) -> String {
    let n = slots.len().max(1);
    let totals: Vec<i64> = (0..slots.len())
        .map(|i| series.iter().map(|(_, v)| v.get(i).copied().unwrap_or(0).max(0)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - 4.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot_w = plot_w / n as f64;
    let bar_w = (slot_w * 0.8).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = escape(title)
    );
    // Axis: the top value and zero.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#d0d7de"/><text x="{lx}" y="{ty}" font-size="12" text-anchor="end" fill="#59636e">{max}</text><text x="{lx}" y="{y0}" font-size="12" text-anchor="end" fill="#59636e">0</text>"##,
        y0 = TOP + plot_h,
        x1 = WIDTH - 4.0,
        lx = LEFT - 4.0,
        ty = TOP + 8.0,
    );
    for (i, slot) in slots.iter().enumerate() {
        let x = LEFT + i as f64 * slot_w + (slot_w - bar_w) / 2.0;
        let mut y = TOP + plot_h;
        for (s, (name, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0).max(0);
            if v == 0 {
                continue;
            }
            let h = plot_h * v as f64 / max as f64;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{c}"><title>{label}: {v} ({name})</title></rect>"#,
                c = PALETTE[s % PALETTE.len()],
                label = escape(slot),
                name = escape(name),
            );
        }
    }
    // First and last slot labels, so the time span reads at a glance.
    if let (Some(first), Some(last)) = (slots.first(), slots.last()) {
        let _ = write!(
            svg,
            r##"<text x="{LEFT}" y="{ly}" font-size="12" fill="#59636e">{f}</text><text x="{rx}" y="{ly}" font-size="12" text-anchor="end" fill="#59636e">{l}</text>"##,
            ly = HEIGHT - 6.0,
            rx = WIDTH - 4.0,
            f = escape(first),
            l = escape(last),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_scaled_to_the_highest_total_and_labels_are_escaped() {
        let slots = vec!["<a>".to_string(), "b".to_string()];
        let svg = stacked(
            "Votes & more",
            &slots,
            &[("r<1>".into(), vec![2, 4]), ("r2".into(), vec![2, 0])],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title>Votes &amp; more</title>"));
        assert!(svg.contains("&lt;a&gt;: 2 (r&lt;1&gt;)"), "{svg}");
        assert!(!svg.contains("<a>") && !svg.contains("r<1>"));
        assert_eq!(svg.matches("<rect").count(), 3, "a zero draws nothing");
        // Both slots total 4: both bars are full height (170 px of plot).
        assert_eq!(svg.matches(r#"height="85.0""#).count(), 2, "{svg}");
        assert!(svg.contains(r#"height="170.0""#));
        assert!(svg.contains(">4</text>"), "the axis shows the top value");
    }

    #[test]
    fn an_empty_chart_is_still_a_chart() {
        let svg = stacked("Nothing", &[], &[]);
        assert!(svg.contains("<title>Nothing</title>") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 0);
    }
}
