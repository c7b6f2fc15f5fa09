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
    /// Seconds since the epoch (Howard Hinnant's days_from_civil); fields out of their ranges
    /// are not checked here.
    pub fn to_unix(self) -> i64 {
        let y = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (self.month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + self.day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + self.hour * 3600 + self.minute * 60 + self.second
    }

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

/// Milliseconds since the epoch of a [`dashed_millis`] time; None for anything else.
pub fn parse_dashed_millis(text: &str) -> Option<i64> {
    let parts: Vec<i64> = text
        .split('-')
        .map(|part| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    let [year, month, day, hour, minute, second, millis] = parts.as_slice() else {
        return None;
    };
    let valid = (1..=12).contains(month)
        && (1..=31).contains(day)
        && *hour < 24
        && *minute < 60
        && *second < 61
        && *millis < 1000;
    let time = CivilTime {
        year: *year,
        month: *month,
        day: *day,
        hour: *hour,
        minute: *minute,
        second: *second,
    };
    valid.then(|| time.to_unix() * 1000 + millis)
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
        assert_eq!(dashed_millis(1_795_819_438_007), "2026-11-27-22-43-58-007");
        assert_eq!(
            parse_dashed_millis("2026-11-27-22-43-58-007"),
            Some(1_795_819_438_007)
        );
        for bad in [
            "2026-11-27-22-43-58",
            "2026-13-27-22-43-58-007",
            "a-b-c-d-e-f-g",
            "",
        ] {
            assert_eq!(parse_dashed_millis(bad), None, "{bad}");
        }
        for unix in [0, 951_782_400, 1_795_819_438, -86_401] {
            assert_eq!(CivilTime::from_unix(unix).to_unix(), unix);
        }
    }
}
