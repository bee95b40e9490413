//! Durations as people write them (`90`, `90s`, `10m`, `1h`, `250ms`) and as messages print them.
//!
//! A message quotes a duration the way the flag was given: a lock timeout of `200ms` that
//! printed as `0s` read as a bug. So printing picks the largest unit that keeps the value whole,
//! and what it prints parses back to the same value.

use std::time::Duration;

/// `90`, `90s`, `1.5m`, `10m`, `1h`, `250ms`; at most 7 days.
pub(crate) fn parse(raw: &str) -> Result<Duration, String> {
    let hint = "expected a duration such as 30s, 10m or 1h";
    let s = raw.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration: {hint}"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        _ => return Err(format!("'{raw}' has an unknown unit: {hint}")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 7.0 * 86400.0 {
        return Err(format!("'{raw}' is out of range: {hint}, at most 7 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration of at least `least`.
pub(crate) fn parse_at_least(raw: &str, least: Duration) -> Result<Duration, String> {
    let value = parse(raw)?;
    if value < least {
        return Err(format!(
            "'{raw}' is too short: give at least {}",
            show(least)
        ));
    }
    Ok(value)
}

/// A duration in the largest unit that keeps it whole: `200ms`, `90s`, `10m`, `1h`; what
/// [`parse`] reads back to the same value.
pub(crate) fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return if d.is_zero() {
            "0s".to_string()
        } else {
            format!("{}us", d.as_micros())
        };
    }
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "m", "ten", "10 parsecs", "-5s", "99999h"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse_at_least("10ms", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn shows_as_written() {
        for text in ["200ms", "90s", "10m", "1h", "1500ms", "0s"] {
            assert_eq!(show(parse(text).unwrap()), text);
        }
        assert_eq!(show(parse("1.5m").unwrap()), "90s");
    }
}
