//! A robust line fit for leak series: Theil–Sen, the median of the slopes between every pair of
//! points. One outlier iteration (a hash table doubling, a late free) cannot tilt it the way it
//! tilts a least-squares fit or a first-to-last difference.

/// A fitted line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Change in y per unit of x.
    pub slope: f64,
    /// y at x = 0.
    pub intercept: f64,
}

/// Theil–Sen fit of `points` (x, y); `None` with fewer than two distinct x.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<Fit> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, &(x1, y1)) in points.iter().enumerate() {
        for &(x2, y2) in &points[i + 1..] {
            if x2 != x1 {
                slopes.push((y2 - y1) / (x2 - x1));
            }
        }
    }
    let slope = median(&mut slopes)?;
    let mut offsets: Vec<f64> = points.iter().map(|&(x, y)| y - slope * x).collect();
    let intercept = median(&mut offsets)?;
    Some(Fit { slope, intercept })
}

/// Median of `values` (reordered in place); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(slope: f64, n: usize) -> Vec<(f64, f64)> {
        (0..n).map(|i| (i as f64, 1000.0 + slope * i as f64)).collect()
    }

    #[test]
    fn an_exact_line_is_recovered() {
        let fit = theil_sen(&line(256.0, 10)).unwrap();
        assert_eq!(fit.slope, 256.0);
        assert_eq!(fit.intercept, 1000.0);
    }

    #[test]
    fn one_outlier_does_not_tilt_the_slope() {
        let mut points = line(0.0, 10);
        points[4].1 += 1_000_000.0;
        assert_eq!(theil_sen(&points).unwrap().slope, 0.0);
        // A least-squares fit of the same points would report a slope; a step in the last point
        // would fool a first-to-last difference.
        let mut step = line(0.0, 10);
        step[9].1 += 50_000.0;
        assert_eq!(theil_sen(&step).unwrap().slope, 0.0);
    }

    #[test]
    fn degenerate_inputs_give_none() {
        assert!(theil_sen(&[]).is_none());
        assert!(theil_sen(&[(1.0, 2.0)]).is_none());
        assert!(theil_sen(&[(1.0, 2.0), (1.0, 3.0)]).is_none());
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), Some(2.5));
    }
}
