//! The sessions-per-day chart of a domain page: stacked bars (successful below, failed above)
//! for each UTC day of the window, laid out here and drawn as inline SVG by the template.

/// The drawing area, in SVG user units (the SVG scales to the page width).
pub(crate) const WIDTH: u32 = 720;
pub(crate) const HEIGHT: u32 = 200;
/// Room under the bars for the day labels, and left of them for the scale.
const BOTTOM: u32 = 24;
const LEFT: u32 = 48;

/// One day's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayCount {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub successful: i64,
    pub failed: i64,
}

/// One bar: where its two parts go.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub day: String,
    pub successful: i64,
    pub failed: i64,
    pub x: u32,
    pub width: u32,
    pub ok_y: u32,
    pub ok_height: u32,
    pub failed_y: u32,
    pub failed_height: u32,
    /// The last day and every 7th before it carry their date under the axis.
    pub label: Option<String>,
}

/// The chart: its bars, the scale's top value and the axis position.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub bars: Vec<Bar>,
    pub max: i64,
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub base: u32,
    pub total_successful: i64,
    pub total_failed: i64,
}

impl Chart {
    /// Lays out `days` (oldest first, one entry per day of the window, zeros included).
    pub(crate) fn new(days: &[DayCount]) -> Chart {
        let base = HEIGHT - BOTTOM;
        let max = nice(
            days.iter()
                .map(|d| d.successful + d.failed)
                .max()
                .unwrap_or(0),
        );
        let slot = (WIDTH - LEFT) / (days.len().max(1) as u32);
        let bar = slot.saturating_sub(2).max(1);
        let scale = |n: i64| ((n.max(0) as f64 / max as f64) * f64::from(base - 8)).round() as u32;
        let last = days.len().saturating_sub(1);
        let bars = days
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let ok_height = scale(d.successful);
                let failed_height = scale(d.failed);
                Bar {
                    day: d.day.clone(),
                    successful: d.successful,
                    failed: d.failed,
                    x: LEFT + i as u32 * slot + 1,
                    width: bar,
                    ok_y: base - ok_height,
                    ok_height,
                    failed_y: base - ok_height - failed_height,
                    failed_height,
                    // "MM-DD": the year is in the table and the summary.
                    label: (last - i)
                        .is_multiple_of(7)
                        .then(|| d.day.get(5..).unwrap_or_default().to_owned()),
                }
            })
            .collect();
        Chart {
            bars,
            max,
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            base,
            total_successful: days.iter().map(|d| d.successful).sum(),
            total_failed: days.iter().map(|d| d.failed).sum(),
        }
    }
}

/// The scale's top: `n` rounded up to 1, 2 or 5 times a power of ten (at least 1).
fn nice(n: i64) -> i64 {
    let mut p = 1i64;
    loop {
        for m in [1, 2, 5] {
            if n <= m * p {
                return m * p;
            }
        }
        match p.checked_mul(10) {
            Some(next) => p = next,
            None => return n.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32, ok: i64, failed: i64) -> DayCount {
        DayCount {
            day: format!("2026-12-{d:02}"),
            successful: ok,
            failed,
        }
    }

    #[test]
    fn bars_stack_failed_on_successful_and_scale_to_the_largest_day() {
        let mut days = vec![day(1, 80, 20), day(2, 0, 0)];
        days.extend((3..=9).map(|d| day(d, 10, 0)));
        let c = Chart::new(&days);
        assert_eq!(c.max, 100);
        let b = &c.bars[0];
        // The largest day fills the height above the axis (base - 8 units).
        assert_eq!(b.ok_height + b.failed_height, c.base - 8);
        assert_eq!(b.failed_y + b.failed_height, b.ok_y);
        assert_eq!((c.bars[1].ok_height, c.bars[1].failed_height), (0, 0));
        assert_eq!((c.total_successful, c.total_failed), (150, 20));
        assert!(c.bars[0].x < c.bars[1].x && c.bars[1].x < c.bars[2].x);
        // Labels count back from the last day, so the newest always has one.
        let labels: Vec<_> = c.bars.iter().filter_map(|b| b.label.as_deref()).collect();
        assert_eq!(labels, ["12-02", "12-09"]);
    }

    #[test]
    fn the_scale_rounds_up() {
        let cases = [
            (0, 1),
            (1, 1),
            (3, 5),
            (7, 10),
            (11, 20),
            (120, 200),
            (501, 1000),
        ];
        for (n, want) in cases {
            assert_eq!(nice(n), want, "{n}");
        }
    }
}
