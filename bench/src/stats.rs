//! Small statistics: nearest-rank percentiles of a sample, and per-second counts of events.

use serde::Serialize;

/// Percentiles of a sample of durations in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The nearest-rank percentile (`q` in 0..=1) of sorted values: the smallest value with at least
/// `q` of the sample at or below it. Nearest rank reports a value that was really observed,
/// which matters for maxima and small samples (no interpolation between two fires).
pub fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarises durations given in microseconds (sorts them in place).
pub fn summarise(values: &mut [i64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let ms = |q: f64| percentile(values, q).unwrap_or_default() as f64 / 1000.0;
    let sum: i128 = values.iter().map(|v| i128::from(*v)).sum();
    Some(Summary {
        count: values.len(),
        mean_ms: sum as f64 / values.len() as f64 / 1000.0,
        p50_ms: ms(0.50),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
    })
}

/// Counts events per whole second from `start_us` (inclusive) to `end_us` (exclusive); events
/// outside the range are ignored. The last, partial second is dropped so that a rate is never
/// computed over a fraction of a second.
pub fn per_second(times_us: impl IntoIterator<Item = i64>, start_us: i64, end_us: i64) -> Vec<u64> {
    let seconds = ((end_us - start_us).max(0) / 1_000_000) as usize;
    let mut counts = vec![0u64; seconds];
    for t in times_us {
        if t < start_us {
            continue;
        }
        let slot = ((t - start_us) / 1_000_000) as usize;
        if let Some(count) = counts.get_mut(slot) {
            *count += 1;
        }
    }
    counts
}

/// The largest value (µs, reported in ms) per second of its instant, from `start_us` to `end_us`.
pub fn max_per_second(
    values: impl IntoIterator<Item = (i64, i64)>,
    start_us: i64,
    end_us: i64,
) -> Vec<u64> {
    let seconds = ((end_us - start_us).max(0) / 1_000_000) as usize;
    let mut max = vec![0u64; seconds];
    for (t, value_us) in values {
        if t < start_us {
            continue;
        }
        if let Some(slot) = max.get_mut(((t - start_us) / 1_000_000) as usize) {
            *slot = (*slot).max((value_us.max(0) / 1_000) as u64);
        }
    }
    max
}

/// Minimum, median and maximum of per-second counts.
pub fn spread(counts: &[u64]) -> Option<(u64, u64, u64)> {
    if counts.is_empty() {
        return None;
    }
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    Some((
        sorted[0],
        sorted[(sorted.len() - 1) / 2],
        sorted[sorted.len() - 1],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_per_second_keeps_the_largest_value_of_each_second() {
        let s = 1_000_000;
        let values = [
            (0, 5_000),
            (s / 2, 9_000),
            (s, 1_000),
            (3 * s, 2_000),
            (-1, 99_000),
        ];
        assert_eq!(max_per_second(values, 0, 3 * s), vec![9, 1, 0]);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), Some(50));
        assert_eq!(percentile(&sorted, 0.95), Some(95));
        assert_eq!(percentile(&sorted, 0.99), Some(99));
        assert_eq!(percentile(&sorted, 1.0), Some(100));
        assert_eq!(percentile(&sorted, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
        // Small samples report an observed value, never an interpolation.
        assert_eq!(percentile(&[10, 20, 30], 0.5), Some(20));
        assert_eq!(percentile(&[10, 20, 30], 0.99), Some(30));
        assert_eq!(percentile(&[7], 0.99), Some(7));
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let mut values = vec![3_000, 1_000, 2_000, 4_000];
        let summary = summarise(&mut values).unwrap();
        assert_eq!(summary.count, 4);
        assert_eq!(summary.p50_ms, 2.0);
        assert_eq!(summary.p99_ms, 4.0);
        assert_eq!(summary.max_ms, 4.0);
        assert_eq!(summary.mean_ms, 2.5);
        assert!(summarise(&mut []).is_none());
    }

    #[test]
    fn counts_per_whole_second() {
        let s = 1_000_000;
        let times = [0, 10, s - 1, s, 2 * s + 5, 3 * s, -5, 10 * s];
        // Three whole seconds between 0 and 3.5 s: the half second at the end is dropped.
        assert_eq!(per_second(times, 0, 3 * s + s / 2), vec![3, 1, 1]);
        assert_eq!(per_second(times, 5, 5), Vec::<u64>::new());
        assert_eq!(spread(&[5, 1, 9, 3]), Some((1, 3, 9)));
        assert_eq!(spread(&[]), None);
    }
}
