//! Evaluation metrics for a scored, labelled set.

/// Binary classification figures at one threshold, plus threshold-free AUC.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    pub n: usize,
    pub positives: usize,
    pub negatives: usize,
    pub threshold: f32,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub fpr: f64,
    /// Area under the ROC curve; `None` when only one class is present.
    pub auc: Option<f64>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Figures for `scores` against `labels` (true = attack) at `threshold`
/// (score >= threshold is flagged). Extra elements of the longer slice are ignored.
pub fn compute(scores: &[f32], labels: &[bool], threshold: f32) -> Metrics {
    let (mut tp, mut fp, mut tn, mut fneg) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= threshold, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fneg += 1,
        }
    }
    let n = tp + fp + tn + fneg;
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fneg);
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Metrics {
        n,
        positives: tp + fneg,
        negatives: tn + fp,
        threshold,
        accuracy: ratio(tp + tn, n),
        precision,
        recall,
        f1,
        fpr: ratio(fp, fp + tn),
        auc: auc(scores, labels),
    }
}

/// ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half.
pub fn auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let mut v: Vec<(f32, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    let pos = v.iter().filter(|x| x.1).count();
    let neg = v.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0.total_cmp(&v[i].0).is_eq() {
            j += 1;
        }
        // ranks i+1 ..= j, average
        let avg = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let p = pos as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// The lowest threshold whose false-positive rate on `scores`/`labels` is at
/// most `max_fpr`, and the recall there. `None` without both classes.
pub fn recall_at_fpr(scores: &[f32], labels: &[bool], max_fpr: f64) -> Option<(f32, f64)> {
    let mut neg: Vec<f32> = scores.iter().zip(labels).filter(|x| !*x.1).map(|x| *x.0).collect();
    let pos: Vec<f32> = scores.iter().zip(labels).filter(|x| *x.1).map(|x| *x.0).collect();
    if neg.is_empty() || pos.is_empty() {
        return None;
    }
    neg.sort_by(|a, b| b.total_cmp(a));
    // Allowed false positives; the threshold sits just above the next negative.
    let allowed = (max_fpr * neg.len() as f64).floor() as usize;
    let threshold = if allowed >= neg.len() { f32::NEG_INFINITY } else { next_up(neg[allowed]) };
    let recall = ratio(pos.iter().filter(|&&s| s >= threshold).count(), pos.len());
    Some((threshold, recall))
}

fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    f32::from_bits(if x > 0.0 { bits + 1 } else { bits - 1 })
}

/// The `q`-quantile (0..=1, nearest rank) of `values`; 0 when empty.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
