//! Shape-preserving downsampling of long series for charts: largest-triangle-three-buckets
//! (Steinarsson, 2013), which keeps the points that shape the curve, plus the series' minimum
//! and maximum, which LTTB alone may drop and which are what a reader of a loss curve looks
//! for first.

/// At most this many points of one series are drawn.
pub const MAX_POINTS: usize = 1_000;

/// `points` (ordered by x) reduced to at most `limit` points (at least 4), keeping the first,
/// the last, the minimum and the maximum. Shorter series come back unchanged.
pub fn downsample(points: &[(f64, f64)], limit: usize) -> Vec<(f64, f64)> {
    let limit = limit.max(4);
    if points.len() <= limit {
        return points.to_vec();
    }
    // Two places are kept for the extremes, which LTTB may not have chosen.
    let mut chosen = lttb(points, limit - 2);
    for extreme in [extreme(points, |a, b| a < b), extreme(points, |a, b| a > b)] {
        if let Err(at) = chosen.binary_search(&extreme) {
            chosen.insert(at, extreme);
        }
    }
    chosen.into_iter().map(|index| points[index]).collect()
}

/// The indices LTTB keeps: the first and last point, and from each of `target - 2` equal
/// buckets between them the point making the largest triangle with the point kept before it
/// and the mean of the next bucket.
fn lttb(points: &[(f64, f64)], target: usize) -> Vec<usize> {
    let n = points.len();
    let buckets = target - 2;
    let width = (n - 2) as f64 / buckets as f64;
    let bucket_start = |b: usize| 1 + (b as f64 * width) as usize;
    let mut chosen = Vec::with_capacity(target);
    chosen.push(0);
    let mut previous = 0;
    for b in 0..buckets {
        let (start, end) = (bucket_start(b), bucket_start(b + 1).min(n - 1));
        let (next_start, next_end) = (end, bucket_start(b + 2).min(n - 1).max(end + 1).min(n));
        let next = &points[next_start..next_end];
        let mean = (
            next.iter().map(|p| p.0).sum::<f64>() / next.len() as f64,
            next.iter().map(|p| p.1).sum::<f64>() / next.len() as f64,
        );
        let (ax, ay) = points[previous];
        let area = |&(x, y): &(f64, f64)| ((ax - mean.0) * (y - ay) - (ax - x) * (mean.1 - ay)).abs();
        let best =
            (start..end.max(start + 1)).max_by(|&i, &j| area(&points[i]).total_cmp(&area(&points[j]))).unwrap_or(start);
        chosen.push(best);
        previous = best;
    }
    chosen.push(n - 1);
    chosen
}

/// The index of the point whose y wins `better` against every other (the first on ties).
fn extreme(points: &[(f64, f64)], better: impl Fn(f64, f64) -> bool) -> usize {
    let mut best = 0;
    for (index, point) in points.iter().enumerate() {
        if better(point.1, points[best].1) {
            best = index;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(n: usize) -> Vec<(f64, f64)> {
        // A decaying curve with deterministic noise and two spikes away from bucket centres.
        (0..n)
            .map(|i| {
                let x = i as f64;
                let mut y = 2.0 * (-x / 3_000.0).exp() + 0.05 * ((i * 7919 % 101) as f64 / 101.0);
                if i == 4_321 {
                    y = 9.0;
                }
                if i == 7_777 {
                    y = -3.0;
                }
                (x, y)
            })
            .collect()
    }

    #[test]
    fn keeps_first_last_minimum_and_maximum_within_the_limit() {
        let points = noisy(10_000);
        let reduced = downsample(&points, MAX_POINTS);
        assert!(reduced.len() <= MAX_POINTS, "{} points", reduced.len());
        assert!(reduced.len() >= MAX_POINTS - 2);
        assert_eq!(reduced.first(), points.first());
        assert_eq!(reduced.last(), points.last());
        assert!(reduced.contains(&(4_321.0, 9.0)), "the maximum is kept");
        assert!(reduced.contains(&(7_777.0, -3.0)), "the minimum is kept");
        assert!(reduced.windows(2).all(|w| w[0].0 < w[1].0), "x stays in order, without repeats");
    }

    #[test]
    fn keeps_a_one_point_dip_and_spike_of_a_jagged_series_and_leaves_short_series_alone() {
        // A flat series whose one-point dip sits where LTTB's triangle would not pick it.
        let mut points: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, (i % 2) as f64)).collect();
        points[51].1 = -0.5;
        points[52].1 = 1.5;
        let reduced = downsample(&points, 10);
        assert!(reduced.len() <= 10);
        for kept in [points[0], points[99], points[51], points[52]] {
            assert!(reduced.contains(&kept), "{kept:?} missing from {reduced:?}");
        }
        let short = noisy(500);
        assert_eq!(downsample(&short, MAX_POINTS), short);
    }
}
