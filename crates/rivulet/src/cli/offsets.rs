//! Parsing of offset positions (`start`, `end`, `N`, `-N`, `@timestamp`) shared by `consume -o`
//! and `group seek --to`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// A position in every selected partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The log start offset.
    Start,
    /// The high watermark (the next offset to be written).
    End,
    /// An absolute offset.
    Offset(i64),
    /// This many records before the end.
    Tail(i64),
    /// The first record with a timestamp at or after these milliseconds since the epoch.
    Timestamp(i64),
}

/// The accepted syntax, for error messages and help.
pub const POSITION_HELP: &str = "start, end, an offset N, -N (N before the end), or @TIME where TIME is \
milliseconds since the epoch, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, or a duration ago like -1h, -30m, -10s, -2d";

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses a position; `now_ms` anchors relative timestamps like `@-1h`.
pub fn parse_position(s: &str, now_ms: i64) -> Result<Position> {
    let s = s.trim();
    let position = match s {
        "start" | "beginning" | "oldest" | "earliest" => Position::Start,
        "end" | "newest" | "latest" => Position::End,
        _ => {
            if let Some(ts) = s.strip_prefix('@') {
                Position::Timestamp(
                    parse_timestamp(ts, now_ms)
                        .with_context(|| format!("invalid timestamp {s:?}; expected {POSITION_HELP}"))?,
                )
            } else if let Some(n) = s.strip_prefix('-') {
                match n.parse::<i64>() {
                    Ok(n) if n > 0 => Position::Tail(n),
                    _ => bail!("invalid offset {s:?}; expected {POSITION_HELP}"),
                }
            } else {
                match s.parse::<i64>() {
                    Ok(n) if n >= 0 => Position::Offset(n),
                    _ => bail!("invalid offset {s:?}; expected {POSITION_HELP}"),
                }
            }
        }
    };
    Ok(position)
}

/// Parses the part after `@`.
fn parse_timestamp(s: &str, now_ms: i64) -> Result<i64> {
    if let Some(ago) = s.strip_prefix('-') {
        return Ok(now_ms - parse_duration_ms(ago)?);
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().context("timestamp out of range");
    }
    parse_date_time(s)
}

/// `10s`, `30m`, `1h`, `2d`, `500ms`.
fn parse_duration_ms(s: &str) -> Result<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: i64 = number.parse().context("expected a number before the unit")?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("unknown duration unit {unit:?} (use ms, s, m, h or d)"),
    };
    n.checked_mul(unit_ms).context("duration out of range")
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC).
fn parse_date_time(s: &str) -> Result<i64> {
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        bail!("expected YYYY-MM-DD");
    };
    let (y, m, d): (i64, i64, i64) = (y.parse()?, m.parse()?, d.parse()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        bail!("month or day out of range");
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if let Some(t) = time {
        let t = t.strip_suffix('Z').context("times must be UTC and end in Z")?;
        let (hms, frac) = match t.split_once('.') {
            Some((hms, f)) => (hms, Some(f)),
            None => (t, None),
        };
        let fields: Vec<&str> = hms.split(':').collect();
        let [h, mi, sec] = fields.as_slice() else {
            bail!("expected HH:MM:SS");
        };
        let (h, mi, sec): (i64, i64, i64) = (h.parse()?, mi.parse()?, sec.parse()?);
        if h > 23 || mi > 59 || sec > 60 {
            bail!("time out of range");
        }
        ms += ((h * 60 + mi) * 60 + sec) * 1000;
        if let Some(f) = frac {
            let digits: String = f.chars().take(3).collect();
            let scaled = format!("{digits:0<3}");
            ms += scaled.parse::<i64>().context("invalid fraction of a second")?;
        }
    }
    Ok(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_numeric_and_tail_positions() -> Result<()> {
        assert_eq!(parse_position("start", 0)?, Position::Start);
        assert_eq!(parse_position("end", 0)?, Position::End);
        assert_eq!(parse_position("42", 0)?, Position::Offset(42));
        assert_eq!(parse_position("-3", 0)?, Position::Tail(3));
        assert!(parse_position("-0", 0).is_err());
        assert!(parse_position("soon", 0).is_err());
        Ok(())
    }

    #[test]
    fn parses_timestamps() -> Result<()> {
        assert_eq!(
            parse_position("@1700000000000", 0)?,
            Position::Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            parse_position("@-1h", 10_000_000)?,
            Position::Timestamp(10_000_000 - 3_600_000)
        );
        assert_eq!(parse_position("@1970-01-02", 0)?, Position::Timestamp(86_400_000));
        assert_eq!(
            parse_position("@2023-11-14T22:13:20Z", 0)?,
            Position::Timestamp(1_700_000_000_000)
        );
        assert_eq!(
            parse_position("@2023-11-14T22:13:20.5Z", 0)?,
            Position::Timestamp(1_700_000_000_500)
        );
        assert!(parse_position("@2023-13-01", 0).is_err());
        assert!(parse_position("@-1y", 0).is_err());
        assert!(parse_position("@2023-11-14T22:13:20", 0).is_err());
        Ok(())
    }
}
