//! Calendar dates and times (UTC) from seconds since the Unix epoch, without a date crate: what
//! SigV4 dates, event timestamps and recording chunk names are spelled with.

/// A UTC date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

impl CivilTime {
    pub fn from_unix(unix: i64) -> CivilTime {
        let days = unix.div_euclid(86_400);
        let seconds = unix.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        CivilTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: seconds / 3600,
            minute: seconds % 3600 / 60,
            second: seconds % 60,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch.
pub fn iso8601(unix: i64) -> String {
    let t = CivilTime::from_unix(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of milliseconds since the epoch.
pub fn iso8601_millis(unix_ms: i64) -> String {
    with_millis(unix_ms, ['-', 'T', ':', '.'], "Z")
}

/// `YYYY-MM-DD-HH-MM-SS-mmm` of milliseconds since the epoch: how AWS names a recording's
/// chunks.
pub fn dashed_millis(unix_ms: i64) -> String {
    with_millis(unix_ms, ['-'; 4], "")
}

/// The date, the time and the milliseconds, with `separators` between the date's parts, before
/// the time, between the time's parts and before the milliseconds.
fn with_millis(unix_ms: i64, separators: [char; 4], suffix: &str) -> String {
    let t = CivilTime::from_unix(unix_ms.div_euclid(1000));
    let [date, before_time, time, before_millis] = separators;
    format!(
        "{:04}{date}{:02}{date}{:02}{before_time}{:02}{time}{:02}{time}{:02}{before_millis}{:03}{suffix}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        unix_ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_around_leap_days_and_the_epoch() {
        let at = |y, mo, d, h, mi, s| CivilTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
        };
        assert_eq!(CivilTime::from_unix(0), at(1970, 1, 1, 0, 0, 0));
        assert_eq!(
            CivilTime::from_unix(1_795_819_438),
            at(2026, 11, 27, 22, 43, 58)
        );
        assert_eq!(CivilTime::from_unix(951_782_400), at(2000, 2, 29, 0, 0, 0));
        assert_eq!(CivilTime::from_unix(-1), at(1969, 12, 31, 23, 59, 59));
        assert_eq!(iso8601(1_795_819_438), "2026-11-27T22:43:58Z");
        assert_eq!(
            iso8601_millis(1_795_819_438_007),
            "2026-11-27T22:43:58.007Z"
        );
    }
}
