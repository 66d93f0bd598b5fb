//! The health gate between roll-out steps: the runs of the connections on the new version
//! (the canary group) against the rest, on run count, success rate, error classes the rest
//! never had, and p95 run duration. Pure: the deployer gathers the samples.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GateSpec {
    /// Runs of the canary group to observe before deciding (0: decide on what there is,
    /// promoting when nothing failed).
    pub min_runs: u32,
    /// Share of the canary group's runs that must succeed (0 to 1).
    pub min_success_rate: f64,
    /// The canary group's p95 run duration may be at most this many times the rest's
    /// (plus a second), when the rest has enough runs to compare.
    pub max_p95_ratio: f64,
    /// Fail the gate on an error class the rest did not have.
    pub allow_new_error_classes: bool,
    /// How long after a step the gate first looks.
    pub interval_seconds: i64,
    /// How long the gate waits for `min_runs`; then it rolls back.
    pub max_wait_seconds: i64,
}

impl Default for GateSpec {
    fn default() -> Self {
        Self {
            min_runs: 3,
            min_success_rate: 0.95,
            max_p95_ratio: 2.0,
            allow_new_error_classes: false,
            interval_seconds: 300,
            max_wait_seconds: 3600,
        }
    }
}

impl GateSpec {
    pub fn validate(&self, problems: &mut Vec<FieldError>) {
        if !(0.0..=1.0).contains(&self.min_success_rate) {
            problems.push(FieldError::new("gate.min_success_rate", "between 0 and 1"));
        }
        if !(self.max_p95_ratio >= 1.0 && self.max_p95_ratio.is_finite()) {
            problems.push(FieldError::new("gate.max_p95_ratio", "1 or more"));
        }
        if !(1..=86_400).contains(&self.interval_seconds) {
            problems.push(FieldError::new("gate.interval_seconds", "1 to 86400"));
        }
        if self.max_wait_seconds < self.interval_seconds || self.max_wait_seconds > 7 * 86_400 {
            problems.push(FieldError::new(
                "gate.max_wait_seconds",
                "at least interval_seconds, at most 7 days",
            ));
        }
    }
}

/// One finished (or failed and retrying) run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub succeeded: bool,
    pub error_class: Option<String>,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GateFigures {
    pub canary_runs: usize,
    pub canary_success_rate: Option<f64>,
    pub baseline_runs: usize,
    pub baseline_success_rate: Option<f64>,
    pub canary_p95_ms: Option<i64>,
    pub baseline_p95_ms: Option<i64>,
    pub new_error_classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Promote,
    Wait,
    RollBack(String),
}

fn success_rate(samples: &[Sample]) -> Option<f64> {
    (!samples.is_empty())
        .then(|| samples.iter().filter(|s| s.succeeded).count() as f64 / samples.len() as f64)
}

fn p95(samples: &[Sample]) -> Option<i64> {
    let mut durations: Vec<i64> = samples.iter().filter_map(|s| s.duration_ms).collect();
    if durations.is_empty() {
        return None;
    }
    durations.sort_unstable();
    let rank = ((durations.len() as f64) * 0.95).ceil() as usize;
    durations.get(rank.saturating_sub(1)).copied()
}

pub fn evaluate(
    spec: &GateSpec,
    canary: &[Sample],
    baseline: &[Sample],
    waited_seconds: i64,
) -> (Verdict, GateFigures) {
    let failure_classes = |samples: &[Sample]| -> Vec<String> {
        let mut classes: Vec<String> = samples
            .iter()
            .filter(|s| !s.succeeded)
            .filter_map(|s| s.error_class.clone())
            .collect();
        classes.sort();
        classes.dedup();
        classes
    };
    let known = failure_classes(baseline);
    let new_error_classes: Vec<String> = failure_classes(canary)
        .into_iter()
        .filter(|c| !known.contains(c))
        .collect();
    let figures = GateFigures {
        canary_runs: canary.len(),
        canary_success_rate: success_rate(canary),
        baseline_runs: baseline.len(),
        baseline_success_rate: success_rate(baseline),
        canary_p95_ms: p95(canary),
        baseline_p95_ms: p95(baseline),
        new_error_classes,
    };
    let min_runs = spec.min_runs as usize;
    let failures = canary.iter().filter(|s| !s.succeeded).count();
    // Enough failures that the rate cannot reach the minimum whatever comes next.
    let best_possible = 1.0 - failures as f64 / canary.len().max(min_runs) as f64;
    if failures > 0 && best_possible < spec.min_success_rate {
        return (
            Verdict::RollBack(format!(
                "{failures} of {} runs on the new version failed",
                canary.len()
            )),
            figures,
        );
    }
    if !spec.allow_new_error_classes && !figures.new_error_classes.is_empty() {
        return (
            Verdict::RollBack(format!(
                "new error classes on the new version: {}",
                figures.new_error_classes.join(", ")
            )),
            figures,
        );
    }
    if canary.len() < min_runs {
        if waited_seconds >= spec.max_wait_seconds {
            return (
                Verdict::RollBack(format!(
                    "only {} of {min_runs} runs observed in {} s",
                    canary.len(),
                    spec.max_wait_seconds
                )),
                figures,
            );
        }
        return (Verdict::Wait, figures);
    }
    if let Some(rate) = figures.canary_success_rate
        && rate < spec.min_success_rate
    {
        return (
            Verdict::RollBack(format!(
                "success rate {:.1}% is under {:.1}%",
                rate * 100.0,
                spec.min_success_rate * 100.0
            )),
            figures,
        );
    }
    if let (Some(canary_p95), Some(baseline_p95)) = (figures.canary_p95_ms, figures.baseline_p95_ms)
        && baseline.len() >= min_runs
        && canary_p95 as f64 > baseline_p95 as f64 * spec.max_p95_ratio + 1000.0
    {
        return (
            Verdict::RollBack(format!(
                "p95 run duration {canary_p95} ms against {baseline_p95} ms"
            )),
            figures,
        );
    }
    (Verdict::Promote, figures)
}

/// The gate settings of a deployment row.
pub fn gate_of(row: &crate::store::entities::deployment::Model) -> GateSpec {
    serde_json::from_value(row.gate.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ms: i64) -> Sample {
        Sample {
            succeeded: true,
            error_class: None,
            duration_ms: Some(ms),
        }
    }

    fn failed(class: &str) -> Sample {
        Sample {
            succeeded: false,
            error_class: Some(class.into()),
            duration_ms: Some(100),
        }
    }

    #[test]
    fn healthy_canaries_promote_and_too_few_wait() {
        let spec = GateSpec::default();
        let baseline = vec![ok(100), ok(120), ok(110)];
        assert_eq!(
            evaluate(&spec, &[ok(100), ok(130), ok(90)], &baseline, 300).0,
            Verdict::Promote
        );
        assert_eq!(evaluate(&spec, &[ok(100)], &baseline, 300).0, Verdict::Wait);
        assert!(matches!(
            evaluate(&spec, &[ok(100)], &baseline, 3600).0,
            Verdict::RollBack(_)
        ));
    }

    #[test]
    fn a_broken_version_rolls_back_at_its_first_failure_when_the_rate_cannot_recover() {
        let spec = GateSpec::default();
        let (verdict, figures) = evaluate(&spec, &[failed("schema_mismatch")], &[ok(100)], 10);
        assert!(matches!(verdict, Verdict::RollBack(_)), "{verdict:?}");
        assert_eq!(
            figures.new_error_classes,
            vec!["schema_mismatch".to_string()]
        );
    }

    #[test]
    fn slow_canaries_and_new_error_classes_fail_the_gate() {
        let spec = GateSpec {
            min_success_rate: 0.5,
            ..GateSpec::default()
        };
        let baseline = vec![ok(100), ok(100), ok(100), failed("timeout")];
        let slow = vec![ok(5_000), ok(5_000), ok(5_000)];
        assert!(
            matches!(evaluate(&spec, &slow, &baseline, 300).0, Verdict::RollBack(r) if r.contains("p95"))
        );
        let known_failure = vec![ok(100), ok(100), failed("timeout")];
        assert_eq!(
            evaluate(&spec, &known_failure, &baseline, 300).0,
            Verdict::Promote
        );
        let new_failure = vec![ok(100), ok(100), failed("auth")];
        assert!(
            matches!(evaluate(&spec, &new_failure, &baseline, 300).0, Verdict::RollBack(r) if r.contains("auth"))
        );
    }
}
