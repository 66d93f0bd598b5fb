//! DST behaviour, checked against the exact UTC instants of each change in 2026.
//! Zone rules: America/New_York 8 Mar 02:00 EST -> 03:00 EDT, 1 Nov 02:00 EDT -> 01:00 EST;
//! Europe/London 29 Mar 01:00 GMT -> 02:00 BST, 25 Oct 02:00 BST -> 01:00 GMT;
//! Australia/Lord_Howe 4 Oct 02:00 (+10:30) -> 02:30 (+11), 5 Apr 02:00 (+11) -> 01:30 (+10:30);
//! Asia/Shanghai has no DST.

use super::*;

fn runs(cron: &str, zone: &str, start: &str, count: usize) -> Vec<String> {
    let spec = ScheduleSpec::Cron {
        cron: cron.into(),
        timezone: Some(zone.into()),
    };
    let schedule = Schedule::parse(&spec, "UTC").unwrap();
    let mut at: DateTime<Utc> = start.parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..count {
        at = schedule.next_after(at).unwrap();
        out.push(at.format("%Y-%m-%dT%H:%MZ").to_string());
    }
    out
}

#[test]
fn new_york_spring_forward() {
    // 02:30 does not exist on 8 March: it runs at the first instant after the gap (03:00 EDT).
    assert_eq!(
        runs("30 2 * * *", "America/New_York", "2026-03-07T00:00:00Z", 3),
        [
            "2026-03-07T07:30Z",
            "2026-03-08T07:00Z",
            "2026-03-09T06:30Z"
        ]
    );
    // Hourly: 01:00 EST, then 03:00 EDT one real hour later; 02:00 folds into it, once.
    assert_eq!(
        runs("0 * * * *", "America/New_York", "2026-03-08T04:30:00Z", 4),
        [
            "2026-03-08T05:00Z",
            "2026-03-08T06:00Z",
            "2026-03-08T07:00Z",
            "2026-03-08T08:00Z"
        ]
    );
    assert_eq!(
        runs(
            "*/15 * * * *",
            "America/New_York",
            "2026-03-08T06:30:00Z",
            3
        ),
        [
            "2026-03-08T06:45Z",
            "2026-03-08T07:00Z",
            "2026-03-08T07:15Z"
        ]
    );
}

#[test]
fn new_york_fall_back() {
    // 01:30 happens twice on 1 November: a daily schedule runs at the first one only.
    assert_eq!(
        runs("30 1 * * *", "America/New_York", "2026-10-31T00:00:00Z", 3),
        [
            "2026-10-31T05:30Z",
            "2026-11-01T05:30Z",
            "2026-11-02T06:30Z"
        ]
    );
    // Hourly runs in both 01:00s: they are different real hours.
    assert_eq!(
        runs("0 * * * *", "America/New_York", "2026-11-01T03:30:00Z", 5),
        [
            "2026-11-01T04:00Z",
            "2026-11-01T05:00Z",
            "2026-11-01T06:00Z",
            "2026-11-01T07:00Z",
            "2026-11-01T08:00Z"
        ]
    );
    assert_eq!(
        runs(
            "*/15 * * * *",
            "America/New_York",
            "2026-11-01T05:30:00Z",
            7
        ),
        [
            "2026-11-01T05:45Z",
            "2026-11-01T06:00Z",
            "2026-11-01T06:15Z",
            "2026-11-01T06:30Z",
            "2026-11-01T06:45Z",
            "2026-11-01T07:00Z",
            "2026-11-01T07:15Z"
        ]
    );
    // A schedule confined to the repeated hour is not hourly: it runs in the first pass only.
    assert_eq!(
        runs(
            "*/30 1 * * *",
            "America/New_York",
            "2026-11-01T04:00:00Z",
            3
        ),
        [
            "2026-11-01T05:00Z",
            "2026-11-01T05:30Z",
            "2026-11-02T06:00Z"
        ]
    );
}

#[test]
fn london_spring_forward_and_fall_back() {
    assert_eq!(
        runs("30 1 * * *", "Europe/London", "2026-03-28T00:00:00Z", 3),
        [
            "2026-03-28T01:30Z",
            "2026-03-29T01:00Z",
            "2026-03-30T00:30Z"
        ]
    );
    assert_eq!(
        runs("0 * * * *", "Europe/London", "2026-03-28T23:30:00Z", 3),
        [
            "2026-03-29T00:00Z",
            "2026-03-29T01:00Z",
            "2026-03-29T02:00Z"
        ]
    );
    assert_eq!(
        runs("*/15 * * * *", "Europe/London", "2026-03-29T00:30:00Z", 3),
        [
            "2026-03-29T00:45Z",
            "2026-03-29T01:00Z",
            "2026-03-29T01:15Z"
        ]
    );
    assert_eq!(
        runs("30 1 * * *", "Europe/London", "2026-10-24T00:00:00Z", 3),
        [
            "2026-10-24T00:30Z",
            "2026-10-25T00:30Z",
            "2026-10-26T01:30Z"
        ]
    );
    assert_eq!(
        runs("0 * * * *", "Europe/London", "2026-10-24T23:30:00Z", 3),
        [
            "2026-10-25T00:00Z",
            "2026-10-25T01:00Z",
            "2026-10-25T02:00Z"
        ]
    );
    assert_eq!(
        runs("*/15 * * * *", "Europe/London", "2026-10-25T00:30:00Z", 3),
        [
            "2026-10-25T00:45Z",
            "2026-10-25T01:00Z",
            "2026-10-25T01:15Z"
        ]
    );
}

#[test]
fn shanghai_has_no_dst() {
    assert_eq!(
        runs("0 9 * * *", "Asia/Shanghai", "2026-03-08T00:00:00Z", 2),
        ["2026-03-08T01:00Z", "2026-03-09T01:00Z"]
    );
    assert_eq!(
        runs("0 * * * *", "Asia/Shanghai", "2026-11-01T04:30:00Z", 3),
        [
            "2026-11-01T05:00Z",
            "2026-11-01T06:00Z",
            "2026-11-01T07:00Z"
        ]
    );
    assert_eq!(
        runs("*/15 * * * *", "Asia/Shanghai", "2026-11-01T05:50:00Z", 2),
        ["2026-11-01T06:00Z", "2026-11-01T06:15Z"]
    );
}

#[test]
fn lord_howe_half_hour_spring_forward() {
    // 02:00-02:29 does not exist on 4 October; 02:15 runs at 02:30 (+11) = 15:30Z.
    assert_eq!(
        runs(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-02T00:00:00Z",
            3
        ),
        [
            "2026-10-02T15:45Z",
            "2026-10-03T15:30Z",
            "2026-10-04T15:15Z"
        ]
    );
    // Hourly: 02:00 runs at 02:30, so the wall-clock hour 02 is not skipped.
    assert_eq!(
        runs(
            "0 * * * *",
            "Australia/Lord_Howe",
            "2026-10-03T14:00:00Z",
            4
        ),
        [
            "2026-10-03T14:30Z",
            "2026-10-03T15:30Z",
            "2026-10-03T16:00Z",
            "2026-10-03T17:00Z"
        ]
    );
    // 02:00 and 02:15 fold into 02:30, which runs once.
    assert_eq!(
        runs(
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-10-03T15:00:00Z",
            4
        ),
        [
            "2026-10-03T15:15Z",
            "2026-10-03T15:30Z",
            "2026-10-03T15:45Z",
            "2026-10-03T16:00Z"
        ]
    );
}

#[test]
fn lord_howe_half_hour_fall_back() {
    // 01:30-01:59 happens twice on 5 April.
    assert_eq!(
        runs(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-03T00:00:00Z",
            3
        ),
        [
            "2026-04-03T14:45Z",
            "2026-04-04T14:45Z",
            "2026-04-05T15:15Z"
        ]
    );
    assert_eq!(
        runs(
            "0 * * * *",
            "Australia/Lord_Howe",
            "2026-04-04T13:30:00Z",
            3
        ),
        [
            "2026-04-04T14:00Z",
            "2026-04-04T15:30Z",
            "2026-04-04T16:30Z"
        ]
    );
    assert_eq!(
        runs(
            "*/15 * * * *",
            "Australia/Lord_Howe",
            "2026-04-04T14:20:00Z",
            5
        ),
        [
            "2026-04-04T14:30Z",
            "2026-04-04T14:45Z",
            "2026-04-04T15:00Z",
            "2026-04-04T15:15Z",
            "2026-04-04T15:30Z"
        ]
    );
}

#[test]
fn vixie_fields_seconds_and_intervals() {
    // 1-5 is Monday to Friday (POSIX), not Sunday to Thursday. 2026-11-27 is a Friday.
    assert_eq!(
        runs("0 9 * * 1-5", "UTC", "2026-11-27T10:00:00Z", 1),
        ["2026-11-30T09:00Z"]
    );
    assert_eq!(
        runs("0 9 * * 7", "UTC", "2026-11-27T10:00:00Z", 1),
        ["2026-11-29T09:00Z"],
        "7 is Sunday"
    );
    let six = Schedule::parse(
        &ScheduleSpec::Cron {
            cron: "30 0 9 * * *".into(),
            timezone: None,
        },
        "Asia/Shanghai",
    )
    .unwrap();
    assert_eq!(
        six.next_after("2026-11-26T00:00:00Z".parse().unwrap())
            .unwrap()
            .to_rfc3339(),
        "2026-11-26T01:00:30+00:00"
    );
    let every = Schedule::parse(&ScheduleSpec::Every { every_seconds: 300 }, "UTC").unwrap();
    assert_eq!(
        every
            .next_after("2026-11-26T00:00:00Z".parse().unwrap())
            .unwrap()
            .to_rfc3339(),
        "2026-11-26T00:05:00+00:00"
    );
}

#[test]
fn bad_schedules_name_their_field() {
    let parse = |spec: ScheduleSpec| Schedule::parse(&spec, "UTC").unwrap_err().0;
    assert_eq!(
        parse(ScheduleSpec::Cron {
            cron: "61 * * * *".into(),
            timezone: None
        }),
        "schedule.cron"
    );
    assert_eq!(
        parse(ScheduleSpec::Cron {
            cron: "* * *".into(),
            timezone: None
        }),
        "schedule.cron"
    );
    assert_eq!(
        parse(ScheduleSpec::Cron {
            cron: "0 0 0 * * * 2030".into(),
            timezone: None
        }),
        "schedule.cron"
    );
    assert_eq!(
        parse(ScheduleSpec::Cron {
            cron: "0 * * * *".into(),
            timezone: Some("Mars/Base".into())
        }),
        "schedule.timezone"
    );
    assert_eq!(
        parse(ScheduleSpec::Every { every_seconds: 1 }),
        "schedule.every_seconds"
    );
    // February 30th never comes: no next run, and no endless search.
    let never = Schedule::parse(
        &ScheduleSpec::Cron {
            cron: "0 0 30 2 *".into(),
            timezone: None,
        },
        "UTC",
    )
    .unwrap();
    assert!(
        never
            .next_after("2026-01-01T00:00:00Z".parse().unwrap())
            .is_none()
    );
}

#[test]
fn a_whole_year_of_hourly_and_quarter_hourly_runs_neither_skips_nor_doubles() {
    for zone in [
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Shanghai",
    ] {
        for (cron, per_day) in [("0 * * * *", 24), ("*/15 * * * *", 96)] {
            let schedule = Schedule::parse(
                &ScheduleSpec::Cron {
                    cron: cron.into(),
                    timezone: Some(zone.into()),
                },
                "UTC",
            )
            .unwrap();
            let end: DateTime<Utc> = "2027-01-01T00:00:00Z".parse().unwrap();
            let mut at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
            let mut previous = at;
            let mut count = 0;
            let mut longest = Duration::zero();
            while let Some(next) = schedule.next_after(at).filter(|n| *n < end) {
                assert!(next > previous, "{zone} {cron}: {next} after {previous}");
                longest = longest.max(next - previous);
                previous = next;
                at = next;
                count += 1;
            }
            // Zones whose offset is not a whole number of hours from UTC start the year mid-hour.
            let expected = 365 * per_day;
            assert!(
                (expected - 1..=expected).contains(&count),
                "{zone} {cron}: {count} runs, expected {expected}"
            );
            let step = Duration::minutes(24 * 60 / per_day);
            assert!(
                longest <= step + Duration::minutes(30),
                "{zone} {cron}: a gap of {longest}"
            );
        }
    }
}

/// A wrong mix of fields is told as such, not as "no variant matched".
#[test]
fn a_schedule_says_which_fields_go_together() {
    let read =
        |v: serde_json::Value| serde_json::from_value::<ScheduleSpec>(v).map_err(|e| e.to_string());
    assert_eq!(
        read(serde_json::json!({"cron": "0 9 * * *", "timezone": "Asia/Shanghai"})),
        Ok(ScheduleSpec::Cron {
            cron: "0 9 * * *".into(),
            timezone: Some("Asia/Shanghai".into())
        })
    );
    assert_eq!(
        read(serde_json::json!({"every_seconds": 60})),
        Ok(ScheduleSpec::Every { every_seconds: 60 })
    );
    assert!(
        read(serde_json::json!({"cron": "0 9 * * *", "every_seconds": 60}))
            .unwrap_err()
            .contains("not both")
    );
    assert!(
        read(serde_json::json!({"every_seconds": 60, "timezone": "UTC"}))
            .unwrap_err()
            .contains("timezone goes with cron")
    );
    assert!(
        read(serde_json::json!({}))
            .unwrap_err()
            .contains("give cron")
    );
    assert!(
        read(serde_json::json!({"cron": "x", "tz": "UTC"}))
            .unwrap_err()
            .contains("unknown field `tz`")
    );
    assert_eq!(
        serde_json::to_value(ScheduleSpec::Every { every_seconds: 60 }).unwrap(),
        serde_json::json!({"every_seconds": 60})
    );
}

/// A number out of its field's range is named with its field and the range.
#[test]
fn out_of_range_cron_numbers_are_named() {
    let problem = |cron: &str| {
        Schedule::parse(
            &ScheduleSpec::Cron {
                cron: cron.into(),
                timezone: None,
            },
            "UTC",
        )
        .err()
        .map(|(field, message)| format!("{field}: {message}"))
    };
    let hour = problem("0 25 * * *").unwrap();
    assert!(
        hour.starts_with("schedule.cron")
            && hour.contains("hour field's 25 is out of range (0 to 23)"),
        "{hour}"
    );
    assert!(
        problem("0 0 9 * * 8")
            .unwrap()
            .contains("day of week field's 8")
    );
    assert!(
        problem("61 * * * * *")
            .unwrap()
            .contains("second field's 61")
    );
    assert!(
        problem("0 0 1-32 * *")
            .unwrap()
            .contains("day of month field's 32")
    );
    assert_eq!(problem("*/15 9-17 * * 1-5"), None);
    assert_eq!(problem("0 0 1 JAN,DEC MON"), None);
}
