//! IANA time zones, as tenants and connections name them.

pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("{name:?} is not an IANA time zone (e.g. Asia/Shanghai, America/New_York)")
    })
}
