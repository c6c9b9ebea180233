//! Small SVG charts: no library, no canvas, rendered on the server like the rest of the page.

use leptos::prelude::*;

/// The `points` of an SVG polyline drawing `values` scaled into `width` × `height`.
pub fn polyline(values: &[f64], width: f64, height: f64) -> String {
    if values.is_empty() {
        return String::new();
    }
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = if max > min { max - min } else { 1.0 };
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = height - 1.0 - (v - min) / span * (height - 2.0);
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A line chart of `values` (newest last), with an accessible label.
#[component]
pub fn LineChart(
    #[prop(into)] values: Signal<Vec<f64>>,
    #[prop(into)] label: String,
    #[prop(default = 240.0)] width: f64,
    #[prop(default = 48.0)] height: f64,
) -> impl IntoView {
    view! {
        <svg class="chart" viewBox=format!("0 0 {width} {height}") width=width height=height
            role="img" aria-label=label preserveAspectRatio="none">
            <polyline fill="none" stroke="currentColor" stroke-width="1.5"
                points=move || polyline(&values.get(), width, height)/>
        </svg>
    }
}

#[cfg(test)]
mod tests {
    use super::polyline;

    #[test]
    fn scales_into_the_box() {
        assert_eq!(polyline(&[], 10.0, 10.0), "");
        assert_eq!(polyline(&[1.0, 3.0], 10.0, 10.0), "0.0,9.0 10.0,1.0");
        assert_eq!(polyline(&[5.0, 5.0], 10.0, 10.0), "0.0,9.0 10.0,9.0");
    }
}
