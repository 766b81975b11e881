//! UTC date-time of the freeze (`Header::created_unix`), formatted here so the
//! output does not depend on the local time zone or on a date crate.

/// Whether `y` is a leap year of the proleptic Gregorian calendar.
fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

/// `YYYY-MM-DD hh:mm:ss UTC` for seconds since 1970-01-01 00:00:00 UTC. Times past
/// the year 9999 (a corrupted or made-up value) are shown as raw seconds.
pub fn utc(secs: u64) -> String {
    const DAY: u64 = 86_400;
    let (mut days, rem) = (secs / DAY, secs % DAY);
    let mut year = 1970u64;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
        if year > 9999 {
            return format!("{secs} seconds after the epoch");
        }
    }
    let feb = if is_leap(year) { 29 } else { 28 };
    let months = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for len in months {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02} {:02}:{:02}:{:02} UTC",
        days + 1,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(86_399), "1970-01-01 23:59:59 UTC");
        // `date -u -d @951782400`: the leap day of a year divisible by 400.
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(951_868_800), "2000-03-01 00:00:00 UTC");
        // 2100 is not a leap year.
        assert_eq!(utc(4_107_542_400), "2100-03-01 00:00:00 UTC");
        assert_eq!(utc(1_795_459_763), "2026-11-23 18:49:23 UTC");
        assert_eq!(utc(1_704_067_199), "2023-12-31 23:59:59 UTC");
        assert_eq!(utc(1_709_210_096), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn absurd_values_are_shown_raw() {
        assert_eq!(utc(u64::MAX), format!("{} seconds after the epoch", u64::MAX));
        assert_eq!(utc(253_402_300_799), "9999-12-31 23:59:59 UTC");
    }
}
