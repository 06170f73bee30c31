//! What the benchmarks share: nearest-rank percentiles, and one line per figure.

use std::time::Duration;

/// The nearest-rank `p` percentile of sorted samples: the smallest sample with at least
/// `p` of them at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints a figure: its sample count, p50, and p99 when there are samples enough for one
/// (100 or more), then its goal.
pub fn report(name: &str, goal: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let p99 = if n >= 100 {
        format!("{:>9.1?}", percentile(&samples, 0.99))
    } else {
        format!("{:>9}", "-")
    };
    println!(
        "{name:<56} n={n:<5} p50={:>9.1?} p99={p99}  {goal}",
        percentile(&samples, 0.5),
    );
}
