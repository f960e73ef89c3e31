//! A self-contained SVG bar chart: per phase, the kernels' GPU time per step, one bar per
//! run (backend) for each kernel, longest first.

use super::{per_step_by_kernel, Run};
use std::fmt::Write;

const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2",
];
const LABEL_W: f64 = 330.0;
const BAR_W: f64 = 520.0;
const BAR_H: f64 = 12.0;
/// Kernels shown per phase (the rest are summed into one row).
const TOP: usize = 24;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of `runs` as an SVG document.
pub fn svg(runs: &[Run]) -> String {
    let mut body = String::new();
    let mut y = 20.0;
    // Legend.
    for (i, r) in runs.iter().enumerate() {
        let x = 10.0 + 280.0 * i as f64;
        let _ = write!(
            body,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{y}">{}</text>"#,
            y - 9.0,
            COLORS[i % COLORS.len()],
            x + 14.0,
            escape(&format!("{} {}", r.backend, r.adapter))
        );
    }
    y += 20.0;
    for (phase, mut rows) in per_step_by_kernel(runs) {
        if rows.len() > TOP {
            let rest: Vec<f64> = rows[TOP..].iter().fold(vec![0.0; runs.len()], |mut a, r| {
                a.iter_mut().zip(&r.1).for_each(|(a, b)| *a += b);
                a
            });
            let more = rows.len() - TOP;
            rows.truncate(TOP);
            rows.push((format!("({more} more kernels)"), rest));
        }
        let max = rows
            .iter()
            .flat_map(|r| r.1.iter().copied())
            .fold(0.0, f64::max)
            .max(1e-9);
        let _ = write!(
            body,
            r#"<text x="10" y="{}" font-weight="bold">{} — GPU µs per step</text>"#,
            y + 4.0,
            phase.name()
        );
        y += 14.0;
        for (name, vals) in &rows {
            let _ = write!(
                body,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LABEL_W - 6.0,
                y + BAR_H * runs.len() as f64 / 2.0 + 4.0,
                escape(name)
            );
            for (i, v) in vals.iter().enumerate() {
                let w = (v / max * BAR_W).max(0.5);
                let _ = write!(
                    body,
                    r#"<rect x="{LABEL_W}" y="{y}" width="{w:.1}" height="{}" fill="{}"><title>{}: {v:.1} µs</title></rect><text x="{:.1}" y="{}">{v:.1}</text>"#,
                    BAR_H - 1.0,
                    COLORS[i % COLORS.len()],
                    escape(name),
                    LABEL_W + w + 4.0,
                    y + BAR_H - 2.0
                );
                y += BAR_H;
            }
            y += 4.0;
        }
        y += 16.0;
    }
    let width = LABEL_W + BAR_W + 80.0;
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif" font-size="10"><rect width="100%" height="100%" fill="white"/>{body}</svg>
"#
    )
}
