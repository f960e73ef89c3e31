//! Timestamps (RFC 3339, as ollama writes them) and keep-alive durations ("5m", "1h30m",
//! 300, -1).

use super::ApiError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-25T12:00:00.123456789Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Seconds since the epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// How long a model stays loaded after its last request; None: forever.
pub type KeepAlive = Option<Duration>;

/// Parses a keep-alive: a number of seconds or a duration string ("10m", "1h30m",
/// "500ms"); any negative value means forever, 0 unloads at once.
pub fn parse_keep_alive(v: &serde_json::Value) -> Result<KeepAlive, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "keep_alive {v}: expected seconds or a duration such as \"5m\" or \"1h30m\""
        ))
    };
    match v {
        serde_json::Value::Number(n) => {
            let s = n.as_f64().ok_or_else(bad)?;
            if s < 0.0 {
                Ok(None)
            } else if s.is_finite() {
                Ok(Some(Duration::from_secs_f64(s.min(1e9))))
            } else {
                Err(bad())
            }
        }
        serde_json::Value::String(s) => parse_duration(s).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// "5m", "1h2m3s", "250ms", "300" (seconds), "-1" (forever).
pub fn parse_duration(s: &str) -> Option<KeepAlive> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return parse_duration(rest).map(|_| None);
    }
    if let Ok(n) = s.parse::<f64>() {
        return n
            .is_finite()
            .then(|| Some(Duration::from_secs_f64(n.min(1e9))));
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Some(Some(Duration::from_secs_f64(total.min(1e9))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        let t = UNIX_EPOCH + Duration::new(1_764_072_000, 5);
        assert_eq!(rfc3339(t), "2025-11-25T12:00:00.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(parse_duration("5m"), Some(Some(Duration::from_secs(300))));
        assert_eq!(
            parse_duration("1h30m"),
            Some(Some(Duration::from_secs(5400)))
        );
        assert_eq!(
            parse_duration("250ms"),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(parse_duration("0"), Some(Some(Duration::ZERO)));
        assert_eq!(parse_duration("-1"), Some(None));
        assert_eq!(parse_duration("-5m"), Some(None));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("m"), None);
    }
}
