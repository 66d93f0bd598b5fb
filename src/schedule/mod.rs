//! Flow schedules: cron (5 fields, or 6 with seconds first) in an IANA time zone, or a fixed
//! interval. Cron fields follow Vixie cron (0 or 7 is Sunday; a restricted day-of-month and
//! day-of-week match either). Parsing and wall-clock matching come from `croner`; turning wall
//! times into instants across DST changes is done here, on purpose:
//!
//! - A wall time that does not exist (spring forward) runs once, at the first instant after
//!   the gap. Several gap times map to that one instant and run once together.
//! - A wall time that happens twice (fall back) runs once, at its first occurrence, unless the
//!   schedule runs every hour (its hour field matches all 24 hours): then each occurrence runs,
//!   because each is a different real hour; hourly and sub-hourly schedules thus neither skip
//!   nor double an hour.
//! - Instants come out strictly increasing; `next_after` never returns the instant it was given.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// A schedule as the API takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ScheduleSpec {
    /// `{"cron": "0 9 * * 1-5", "timezone": "Asia/Shanghai"}`; the zone defaults to the tenant's.
    Cron {
        cron: String,
        timezone: Option<String>,
    },
    /// `{"every_seconds": 300}`: at a fixed interval, 10 seconds to 7 days.
    Every { every_seconds: u32 },
}

/// Read through the fields either shape may have, so a wrong mix is told as such (an
/// untagged enum would only say that no variant matched).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFields {
    cron: Option<String>,
    timezone: Option<String>,
    every_seconds: Option<u32>,
}

impl<'de> Deserialize<'de> for ScheduleSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let fields = ScheduleFields::deserialize(deserializer)?;
        match (fields.cron, fields.every_seconds, fields.timezone) {
            (Some(cron), None, timezone) => Ok(Self::Cron { cron, timezone }),
            (None, Some(every_seconds), None) => Ok(Self::Every { every_seconds }),
            (None, Some(_), Some(_)) => Err(D::Error::custom(
                "timezone goes with cron; an every_seconds interval has none",
            )),
            (Some(_), Some(_), _) => Err(D::Error::custom(
                "give either cron (with an optional timezone) or every_seconds, not both",
            )),
            (None, None, _) => Err(D::Error::custom(
                "give cron (with an optional timezone) or every_seconds",
            )),
        }
    }
}

/// A number outside its field's range, named (the cron parser only says "Number out of
/// bounds"): the field by its position, the value and the range.
fn out_of_range(cron: &str) -> Option<String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let names: &[(&str, u32, u32)] = match fields.len() {
        6 => &[
            ("second", 0, 59),
            ("minute", 0, 59),
            ("hour", 0, 23),
            ("day of month", 1, 31),
            ("month", 1, 12),
            ("day of week", 0, 7),
        ],
        _ => &[
            ("minute", 0, 59),
            ("hour", 0, 23),
            ("day of month", 1, 31),
            ("month", 1, 12),
            ("day of week", 0, 7),
        ],
    };
    for (field, (name, low, high)) in fields.iter().zip(names) {
        for part in field.split(',') {
            // A step (`*/15`, `0-30/5`) counts, not places: only the range before it.
            let range = part.split('/').next().unwrap_or_default();
            for bound in range.split('-') {
                if let Ok(value) = bound.parse::<u32>()
                    && !(*low..=*high).contains(&value)
                {
                    return Some(format!(
                        "the {name} field's {value} is out of range ({low} to {high})"
                    ));
                }
            }
        }
    }
    None
}

pub const MIN_INTERVAL_SECONDS: u32 = 10;
pub const MAX_INTERVAL_SECONDS: u32 = 7 * 24 * 3600;

/// The largest difference between two UTC offsets of one zone (Antarctica/Troll shifts by 2h).
const MAX_OFFSET_SHIFT: Duration = Duration::hours(3);

#[derive(Debug, Clone)]
pub enum Schedule {
    Cron {
        cron: Box<Cron>,
        zone: Tz,
        /// The hour field matches every hour: repeated wall times run at each occurrence.
        every_hour: bool,
    },
    Every {
        seconds: u32,
    },
}

impl Schedule {
    /// Parses a spec; `default_zone` is the tenant's zone. Errors name the field.
    pub fn parse(spec: &ScheduleSpec, default_zone: &str) -> Result<Self, (&'static str, String)> {
        match spec {
            ScheduleSpec::Every { every_seconds } => {
                if !(MIN_INTERVAL_SECONDS..=MAX_INTERVAL_SECONDS).contains(every_seconds) {
                    return Err((
                        "schedule.every_seconds",
                        format!(
                            "must be between {MIN_INTERVAL_SECONDS} and {MAX_INTERVAL_SECONDS}"
                        ),
                    ));
                }
                Ok(Self::Every {
                    seconds: *every_seconds,
                })
            }
            ScheduleSpec::Cron { cron, timezone } => {
                let zone_name = timezone.as_deref().unwrap_or(default_zone);
                let zone = crate::timezone::parse_timezone(zone_name)
                    .map_err(|m| ("schedule.timezone", m))?;
                let fields = cron.split_whitespace().count();
                if !(fields == 5 || fields == 6) {
                    return Err((
                        "schedule.cron",
                        format!(
                            "needs 5 fields (minute hour day month weekday) or 6 (seconds first), not {fields}"
                        ),
                    ));
                }
                if let Some(problem) = out_of_range(cron) {
                    return Err(("schedule.cron", format!("{cron:?}: {problem}")));
                }
                let parsed = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(cron)
                    .map_err(|e| {
                        (
                            "schedule.cron",
                            format!("{cron:?} is not a valid cron expression: {e}"),
                        )
                    })?;
                let every_hour = (0..24).all(|h| parsed.pattern.hour_match(h).unwrap_or(false));
                Ok(Self::Cron {
                    cron: Box::new(parsed),
                    zone,
                    every_hour,
                })
            }
        }
    }

    /// The zone local times are shown in (UTC for intervals).
    pub fn zone(&self) -> Tz {
        match self {
            Self::Cron { zone, .. } => *zone,
            Self::Every { .. } => Tz::UTC,
        }
    }

    /// The first run strictly after `after`. None only for a cron that never matches again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every { seconds } => Some(after + Duration::seconds(i64::from(*seconds))),
            Self::Cron {
                cron,
                zone,
                every_hour,
            } => next_cron(cron, *zone, *every_hour, after),
        }
    }
}

fn next_cron(
    cron: &Cron,
    zone: Tz,
    every_hour: bool,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // Near an offset change a repeated hour can map earlier wall times to later instants, so
    // the walk starts a little before `after` and goes on a little past the best instant.
    // Away from any change (nearly always) the first wall-clock match is the answer.
    let local_after = after.with_timezone(&zone).naive_local();
    let mut cursor = if offset_changes_near(zone, after) {
        local_after - MAX_OFFSET_SHIFT
    } else {
        local_after
    };
    let mut best: Option<DateTime<Utc>> = None;
    for _ in 0..100_000 {
        let wall: NaiveDateTime = cron.find_next_occurrence(&cursor, false).ok()?;
        if let Some(found) = best
            && (!offset_changes_near(zone, found)
                || wall > found.with_timezone(&zone).naive_local() + MAX_OFFSET_SHIFT)
        {
            return best;
        }
        for instant in instants_of(wall, zone, every_hour) {
            if instant > after && best.is_none_or(|b| instant < b) {
                best = Some(instant);
            }
        }
        cursor = wall;
    }
    best
}

/// Whether the zone's UTC offset changes within `MAX_OFFSET_SHIFT` of `at`.
fn offset_changes_near(zone: Tz, at: DateTime<Utc>) -> bool {
    use chrono::Offset;
    let offset = |t: DateTime<Utc>| zone.offset_from_utc_datetime(&t.naive_utc()).fix();
    offset(at - MAX_OFFSET_SHIFT) != offset(at + MAX_OFFSET_SHIFT)
}

/// The instants a wall time stands for in `zone`, by the rules above.
fn instants_of(wall: NaiveDateTime, zone: Tz, every_hour: bool) -> Vec<DateTime<Utc>> {
    match zone.from_local_datetime(&wall) {
        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        LocalResult::Ambiguous(first, second) if every_hour => {
            vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
        }
        LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
        LocalResult::None => end_of_gap(wall, zone).into_iter().collect(),
    }
}

/// The first instant after the gap `wall` falls in: zones change offset on whole minutes.
fn end_of_gap(wall: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    let mut probe = wall.with_second(0)?.with_nanosecond(0)?;
    for _ in 0..(4 * 60) {
        probe += Duration::minutes(1);
        if let Some(t) = zone.from_local_datetime(&probe).earliest() {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

#[cfg(test)]
mod tests;
