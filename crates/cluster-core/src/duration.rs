//! The one duration syntax of the platform: configuration files, CLI flags, `config set` values
//! and library helpers all parse durations here.
//!
//! A duration is one or more `<number><unit>` parts, summed: `500ms`, `15s`, `1.5s`, `2m`,
//! `1h30m`, `1d`. Units: `ms`, `s`, `m`, `h`, `d`. A number may have a decimal fraction (at most
//! nanosecond precision is kept). A bare number is refused (is `30` seconds or milliseconds?).
//! Values are computed exactly in integer nanoseconds; anything above [`MAX_DURATION`] is an
//! error, never a panic or a wrap-around.

use std::time::Duration;

/// The largest duration accepted: 100 years, far beyond any timeout or interval the platform
/// uses, and far below what `Instant + Duration` can hold.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Why a text is not a duration; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000_000_000;

/// Parses a duration such as `500ms`, `15s`, `1.5s`, `2m` or `1h30m` (see the module docs).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let example = "write e.g. \"15s\", \"500ms\", \"2m\" or \"1h30m\"";
    if text.is_empty() {
        return Err(DurationError(format!("empty duration; {example}")));
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(DurationError(format!(
                "{text:?} is not a duration; {example}"
            )));
        }
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_nanos = match unit {
            "ms" => NANOS_PER_MS,
            "s" => NANOS_PER_S,
            "m" => 60 * NANOS_PER_S,
            "h" => 3_600 * NANOS_PER_S,
            "d" => 86_400 * NANOS_PER_S,
            "" => {
                return Err(DurationError(format!(
                    "{text:?} needs a unit (ms, s, m, h or d); {example}"
                )));
            }
            other => {
                return Err(DurationError(format!(
                    "{text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
                )));
            }
        };
        let part = scaled(number, unit_nanos)
            .ok_or_else(|| DurationError(format!("{text:?}: {number:?} is not a number")))?;
        total = total.saturating_add(part);
        if total > MAX_DURATION.as_nanos() {
            return Err(DurationError(format!(
                "{text:?} is too long (at most {} days)",
                MAX_DURATION.as_secs() / 86_400
            )));
        }
    }
    let secs = u64::try_from(total / NANOS_PER_S)
        .map_err(|_| DurationError(format!("{text:?} is too long")))?;
    // The remainder of a division by 10⁹ always fits in u32.
    let nanos = u32::try_from(total % NANOS_PER_S).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `number × unit_nanos` exactly, for a decimal `number` such as `12` or `1.25`; `None` when it
/// is not a number. Saturates instead of overflowing (the caller bounds the total).
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let mut value: u128 = 0;
    for digit in whole.bytes() {
        value = value
            .saturating_mul(10)
            .saturating_add(u128::from(digit - b'0'));
    }
    let mut nanos = value.saturating_mul(unit_nanos);
    // Fraction digits beyond nanosecond precision of the largest unit do not matter.
    let mut scale = unit_nanos;
    for digit in fraction.bytes().take(15) {
        scale /= 10;
        nanos = nanos.saturating_add(u128::from(digit - b'0') * scale);
    }
    Some(nanos)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units_fractions_and_sums() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(".25s").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0.5ms").unwrap(), Duration::from_micros(500));
        assert_eq!(
            parse_duration("1m0.5s").unwrap(),
            Duration::from_millis(60_500)
        );
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_with_a_reason() {
        assert!(parse_duration("30").unwrap_err().0.contains("needs a unit"));
        assert!(
            parse_duration("5 minutes")
                .unwrap_err()
                .0
                .contains("unknown unit")
        );
        assert!(parse_duration("").unwrap_err().0.contains("empty"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1..5s").is_err());
        assert!(parse_duration(".s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1e9s").is_err());
    }

    #[test]
    fn huge_values_are_errors_not_panics() {
        assert!(
            parse_duration("99999999999999999999999999999999999999999d")
                .unwrap_err()
                .0
                .contains("too long")
        );
        assert!(parse_duration("36501d").unwrap_err().0.contains("too long"));
        assert_eq!(parse_duration("36500d").unwrap(), MAX_DURATION);
        let many = "9999999d".repeat(100);
        assert!(parse_duration(&many).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn whole_milliseconds_round_trip(ms in 0u64..MAX_DURATION.as_millis() as u64) {
            prop_assert_eq!(parse_duration(&format!("{ms}ms")).unwrap(), Duration::from_millis(ms));
        }

        #[test]
        fn parts_sum(h in 0u64..1000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let expected = Duration::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms);
            prop_assert_eq!(parse_duration(&text).unwrap(), expected);
        }
    }
}
