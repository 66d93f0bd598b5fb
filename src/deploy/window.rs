//! Deploy windows and freezes, evaluated in the tenant's (or the window's) IANA zone. Pure
//! functions of the policy and an instant, so the deployer's clock can be anything.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Local hours on given weekdays when deployments may switch connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployWindow {
    /// mon, tue, wed, thu, fri, sat, sun.
    pub days: Vec<String>,
    /// Local start, `HH:MM`.
    pub start: String,
    /// Local end, `HH:MM`; before the start, the window runs past midnight.
    pub end: String,
    /// IANA zone; defaults to the tenant's.
    pub timezone: Option<String>,
}

/// Local dates (inclusive) on which nothing is deployed: 11.11, Black Friday week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    pub reason: String,
}

/// A tenant's deploy policy: `PUT /v1/deploy-policy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployPolicy {
    /// Empty: any time.
    #[serde(default)]
    pub windows: Vec<DeployWindow>,
    #[serde(default)]
    pub freezes: Vec<Freeze>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Open,
    /// Closed now; the next window opens then.
    WaitUntil(DateTime<Utc>),
    Frozen {
        reason: String,
    },
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn time(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

/// Problems with a policy, with field paths.
pub fn validate(policy: &DeployPolicy, field: &str) -> Vec<FieldError> {
    let mut problems = Vec::new();
    for (i, window) in policy.windows.iter().enumerate() {
        check_window(window, &format!("{field}.windows[{i}]"), &mut problems);
    }
    for (i, freeze) in policy.freezes.iter().enumerate() {
        if freeze.to < freeze.from {
            problems.push(FieldError::new(
                format!("{field}.freezes[{i}].to"),
                "ends before it starts",
            ));
        }
    }
    problems
}

pub fn check_window(window: &DeployWindow, field: &str, problems: &mut Vec<FieldError>) {
    if window.days.is_empty() || window.days.iter().any(|d| !DAYS.contains(&d.as_str())) {
        problems.push(FieldError::new(
            format!("{field}.days"),
            "one or more of mon, tue, wed, thu, fri, sat, sun",
        ));
    }
    for (name, value) in [("start", &window.start), ("end", &window.end)] {
        if time(value).is_none() {
            problems.push(FieldError::new(format!("{field}.{name}"), "HH:MM, 24-hour"));
        }
    }
    if let Some(zone) = &window.timezone
        && let Err(message) = crate::timezone::parse_timezone(zone)
    {
        problems.push(FieldError::new(format!("{field}.timezone"), message));
    }
}

/// The first instant at or after a local date and time: a time in a spring-forward gap
/// moves to the end of the gap.
fn instant(zone: Tz, date: NaiveDate, at: NaiveTime) -> DateTime<Utc> {
    let mut local = date.and_time(at);
    for _ in 0..180 {
        if let Some(found) = zone.from_local_datetime(&local).earliest() {
            return found.with_timezone(&Utc);
        }
        local += Duration::minutes(1);
    }
    Utc.from_utc_datetime(&date.and_time(at))
}

fn zone_of(window: &DeployWindow, default: Tz) -> Tz {
    window
        .timezone
        .as_deref()
        .and_then(|z| crate::timezone::parse_timezone(z).ok())
        .unwrap_or(default)
}

/// Whether a deployment may switch connections at `now`, and if not, until when it waits.
pub fn decide(
    windows: &[DeployWindow],
    freezes: &[Freeze],
    tenant_zone: Tz,
    now: DateTime<Utc>,
) -> Decision {
    let today = now.with_timezone(&tenant_zone).date_naive();
    if let Some(freeze) = freezes.iter().find(|f| f.from <= today && today <= f.to) {
        return Decision::Frozen {
            reason: freeze.reason.clone(),
        };
    }
    if windows.is_empty() {
        return Decision::Open;
    }
    let mut next: Option<DateTime<Utc>> = None;
    for window in windows {
        let (Some(start), Some(end)) = (time(&window.start), time(&window.end)) else {
            continue;
        };
        let zone = zone_of(window, tenant_zone);
        let local_today = now.with_timezone(&zone).date_naive();
        // Yesterday's window may run past midnight into today.
        for offset in -1..=7 {
            let day = local_today + Duration::days(offset);
            let name = DAYS[day.weekday().num_days_from_monday() as usize];
            if !window.days.iter().any(|d| d == name) {
                continue;
            }
            let opens = instant(zone, day, start);
            let closes = if end > start {
                instant(zone, day, end)
            } else {
                instant(zone, day + Duration::days(1), end)
            };
            if opens <= now && now < closes {
                return Decision::Open;
            }
            if opens > now && next.is_none_or(|n| opens < n) {
                next = Some(opens);
            }
        }
    }
    match next {
        Some(at) => Decision::WaitUntil(at),
        // No valid window at all: nothing to wait for.
        None => Decision::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekday_nights() -> Vec<DeployWindow> {
        vec![DeployWindow {
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            start: "02:00".into(),
            end: "06:00".into(),
            timezone: None,
        }]
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_window_opens_at_its_local_start_in_the_tenants_zone() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        // Friday 27 Nov 2026, 03:00 in Shanghai is 19:00 UTC on Thursday.
        assert_eq!(
            decide(
                &weekday_nights(),
                &[],
                shanghai,
                utc("2026-11-26T19:00:00Z")
            ),
            Decision::Open
        );
        // Friday 10:00 in Shanghai: the next window is Monday 02:00 (Sunday 18:00 UTC).
        assert_eq!(
            decide(
                &weekday_nights(),
                &[],
                shanghai,
                utc("2026-11-27T02:00:00Z")
            ),
            Decision::WaitUntil(utc("2026-11-29T18:00:00Z"))
        );
    }

    #[test]
    fn a_freeze_date_refuses_whatever_the_window() {
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        let singles_day = Freeze {
            from: NaiveDate::from_ymd_opt(2026, 11, 11).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, 11).unwrap(),
            reason: "11.11".into(),
        };
        // 11 Nov 03:00 Shanghai.
        assert_eq!(
            decide(
                &weekday_nights(),
                &[singles_day],
                shanghai,
                utc("2026-11-10T19:00:00Z")
            ),
            Decision::Frozen {
                reason: "11.11".into()
            }
        );
    }

    #[test]
    fn a_window_past_midnight_and_a_start_in_a_dst_gap() {
        let new_york: Tz = "America/New_York".parse().unwrap();
        let late = vec![DeployWindow {
            days: vec!["sat".into(), "sun".into()],
            start: "23:00".into(),
            end: "03:00".into(),
            timezone: None,
        }];
        // Sunday 8 Mar 2026, 01:30 EST: Saturday's window still runs.
        assert_eq!(
            decide(&late, &[], new_york, utc("2026-03-08T06:30:00Z")),
            Decision::Open
        );
        let gap = vec![DeployWindow {
            days: vec!["sun".into()],
            start: "02:30".into(),
            end: "04:00".into(),
            timezone: None,
        }];
        // 02:30 does not exist on 8 Mar 2026: the window opens at 03:00 EDT (07:00 UTC).
        assert_eq!(
            decide(&gap, &[], new_york, utc("2026-03-08T05:00:00Z")),
            Decision::WaitUntil(utc("2026-03-08T07:00:00Z"))
        );
    }
}
