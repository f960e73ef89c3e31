//! The date behind `strftime_now`: today (UTC) or a fixed date given by the caller, and
//! the subset of C `strftime` that chat templates use ("%d %b %Y", "%Y-%m-%d", ...).

/// A calendar date and time of day (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl DateTime {
    /// Midnight of the date written as "25 Nov 2026", "25 November 2026" or "2026-11-25".
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (year, month, day) = if let Some((y, rest)) = s.split_once('-') {
            let (m, d) = rest.split_once('-')?;
            (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
        } else {
            let mut parts = s.split_whitespace();
            let day = parts.next()?.parse().ok()?;
            let m = parts.next()?.to_ascii_lowercase();
            let month = MONTHS
                .iter()
                .position(|name| m.len() >= 3 && name.to_ascii_lowercase().starts_with(&m))?
                as u32
                + 1;
            let year = parts.next()?.parse().ok()?;
            if parts.next().is_some() {
                return None;
            }
            (year, month, day)
        };
        let valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
        valid.then_some(Self {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
            second: 0,
        })
    }

    /// The time `secs` seconds after 1970-01-01 00:00 UTC.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// Now, in UTC.
    pub fn now() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        #[cfg(target_arch = "wasm32")]
        let secs = (js_sys::Date::now() / 1000.0) as i64;
        Self::from_unix(secs)
    }

    /// 0 = Sunday.
    fn weekday(&self) -> usize {
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as usize
    }

    /// Formats with C `strftime` directives; `%-d` style drops the padding as glibc does.
    /// An unknown directive is copied through.
    pub fn strftime(&self, fmt: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = chars.next();
            let unpadded = spec == Some('-');
            if unpadded {
                spec = chars.next();
            }
            let num = |n: u32, width: usize| {
                if unpadded {
                    n.to_string()
                } else {
                    format!("{n:0width$}")
                }
            };
            let month = MONTHS[self.month as usize - 1];
            let weekday = WEEKDAYS[self.weekday()];
            let hour12 = (self.hour + 11) % 12 + 1;
            match spec {
                Some('Y') => out.push_str(&self.year.to_string()),
                Some('y') => out.push_str(&num(self.year.rem_euclid(100) as u32, 2)),
                Some('m') => out.push_str(&num(self.month, 2)),
                Some('d') => out.push_str(&num(self.day, 2)),
                Some('e') => out.push_str(&format!("{:2}", self.day)),
                Some('B') => out.push_str(month),
                Some('b') | Some('h') => out.push_str(&month[..3]),
                Some('A') => out.push_str(weekday),
                Some('a') => out.push_str(&weekday[..3]),
                Some('H') => out.push_str(&num(self.hour, 2)),
                Some('I') => out.push_str(&num(hour12, 2)),
                Some('M') => out.push_str(&num(self.minute, 2)),
                Some('S') => out.push_str(&num(self.second, 2)),
                Some('p') => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                Some('j') => {
                    let doy = days_from_civil(self.year, self.month, self.day)
                        - days_from_civil(self.year, 1, 1)
                        + 1;
                    out.push_str(&num(doy as u32, 3));
                }
                Some('F') => out.push_str(&self.strftime("%Y-%m-%d")),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    if unpadded {
                        out.push('-');
                    }
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_fixed_date() {
        let d = DateTime::parse("25 Nov 2026").unwrap();
        assert_eq!(d, DateTime::parse("2026-11-25").unwrap());
        assert_eq!(d.strftime("%d %b %Y"), "25 Nov 2026");
        assert_eq!(
            d.strftime("%A, %B %-d, %Y %H:%M"),
            "Wednesday, November 25, 2026 00:00"
        );
        assert_eq!(d.strftime("%Y-%m-%d %j %%"), "2026-11-25 329 %");
        assert_eq!(DateTime::parse("31 Feb 2026"), None);
    }

    #[test]
    fn unix_time_round_trips() {
        let d = DateTime::from_unix(1_795_564_800 + 3_661);
        assert_eq!(d.strftime("%Y-%m-%d %H:%M:%S"), "2026-11-25 01:01:01");
        assert_eq!(DateTime::from_unix(0).strftime("%a %F"), "Thu 1970-01-01");
    }
}
