//! The times of `valid-after="..."` and `valid-before="..."`, read as OpenSSH's
//! `parse_absolute_time` reads them: `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, in UTC with
//! a `Z` (or `UTC`) suffix, in the local time zone's standard time without one.
//!
//! OpenSSH hands the fields to `strptime` and `timegm`/`mktime`, which roll over out-of-range
//! days and seconds (February 30th is March 1st or 2nd): done the same way here, so a date means
//! the same second to both. Where OpenSSH would produce a time before 1970 (a negative number it
//! then stores unsigned, i.e. "far in the future"), this refuses the value instead.

use jiff::tz::TimeZone;

/// Seconds since the Unix epoch, for a value written in the system's time zone when unmarked.
pub fn parse(value: &str) -> Result<i64, String> {
    parse_in(value, &TimeZone::system())
}

pub fn parse_in(value: &str, local: &TimeZone) -> Result<i64, String> {
    let bad = || "is not a time in YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z] form".to_string();
    let (digits, utc) = strip_utc(value);
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |at: usize, len: usize| -> i64 {
        digits[at..at + len]
            .parse()
            .expect("only ASCII digits were let through")
    };
    let (year, month, day) = (field(0, 4), field(4, 2), field(6, 2));
    let (hour, minute) = if digits.len() >= 12 {
        (field(8, 2), field(10, 2))
    } else {
        (0, 0)
    };
    let second = if digits.len() == 14 { field(12, 2) } else { 0 };
    // strptime's ranges: anything outside them makes OpenSSH refuse the whole option.
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 61
    {
        return Err(bad());
    }
    if year < 1970 {
        return Err("is before 1970".into());
    }
    let naive =
        (days_from_civil(year, month) + day - 1) * 86_400 + hour * 3600 + minute * 60 + second;
    let t = if utc { naive } else { in_zone(naive, local)? };
    // OpenSSH takes 0 as "no time given" and refuses it; a negative time is refused here.
    if t <= 0 {
        return Err("is not after 1970-01-01T00:00:00Z".into());
    }
    Ok(t)
}

/// `Z` or `UTC`, in any case, as OpenSSH accepts them.
fn strip_utc(value: &str) -> (&str, bool) {
    let lower = value.to_ascii_lowercase();
    if value.len() > 1 && lower.ends_with('z') {
        (&value[..value.len() - 1], true)
    } else if value.len() > 3 && lower.ends_with("utc") {
        (&value[..value.len() - 3], true)
    } else {
        (value, false)
    }
}

/// Days from 1970-01-01 to the first of `month` in `year` (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64) -> i64 {
    // Howard Hinnant's algorithm, with the year starting in March so leap days come last.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The second `naive` names when its (already rolled-over) fields are read as wall-clock time
/// in `zone`, as glibc's `mktime` reads them for OpenSSH: OpenSSH leaves `tm_isdst` at 0, which
/// asks for standard time, so a summer date is read with the zone's standard offset (12:00 in
/// Berlin in July is 11:00Z, not 10:00Z). glibc takes the offset of the nearest time outside
/// DST; the latest one before is taken here, the same offset wherever a zone's standard offset
/// has not changed in between.
fn in_zone(naive: i64, zone: &TimeZone) -> Result<i64, String> {
    let out_of_range = |_| "is out of range".to_string();
    let wall = jiff::Timestamp::from_second(naive)
        .map_err(out_of_range)?
        .to_zoned(TimeZone::UTC)
        .datetime();
    let guess = wall
        .to_zoned(zone.clone())
        .map_err(out_of_range)?
        .timestamp();
    if !zone.to_offset_info(guess).dst().is_dst() {
        return Ok(guess.as_second());
    }
    let standard = zone
        .preceding(guess)
        .find(|t| !t.dst().is_dst())
        .or_else(|| zone.following(guess).find(|t| !t.dst().is_dst()));
    Ok(match standard {
        Some(t) => naive - i64::from(t.offset().seconds()),
        None => guess.as_second(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(value: &str) -> Result<i64, String> {
        parse_in(value, &TimeZone::UTC)
    }

    #[test]
    fn every_form_openssh_accepts_means_the_same_second() {
        // 2024-03-05T06:07:08Z = 1709618828
        assert_eq!(utc("20240305060708Z"), Ok(1_709_618_828));
        assert_eq!(utc("20240305060708z"), Ok(1_709_618_828));
        assert_eq!(utc("20240305060708UTC"), Ok(1_709_618_828));
        assert_eq!(utc("20240305060708utc"), Ok(1_709_618_828));
        assert_eq!(utc("202403050607Z"), Ok(1_709_618_820));
        assert_eq!(utc("20240305Z"), Ok(1_709_596_800));
        assert_eq!(utc("20240305"), Ok(1_709_596_800), "local is UTC here");
        assert_eq!(utc("19700102Z"), Ok(86_400));
        assert_eq!(utc("20000301Z"), Ok(951_868_800), "2000 is a leap year");
    }

    #[test]
    fn out_of_range_days_and_seconds_roll_over_as_timegm_does() {
        assert_eq!(utc("20230230Z"), utc("20230302Z"));
        assert_eq!(utc("20240230Z"), utc("20240301Z"));
        assert_eq!(utc("20240101000060Z"), utc("20240101000100Z"));
    }

    #[test]
    fn without_z_the_local_zone_decides() {
        let berlin = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(
            parse_in("20240115120000", &berlin),
            Ok(utc("20240115110000Z").unwrap()),
            "winter: UTC+1"
        );
        assert_eq!(
            parse_in("20240715120000", &berlin),
            Ok(utc("20240715110000Z").unwrap()),
            "summer: still UTC+1, as mktime reads it with tm_isdst = 0"
        );
        assert_eq!(
            parse_in("20240715120000Z", &berlin),
            utc("20240715120000Z"),
            "Z is UTC anywhere"
        );
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "Z",
            "2024",
            "2024010",
            "202401011",
            "2024-01-01",
            "20241301",
            "20240001",
            "20240100",
            "20240132",
            "202401012400",
            "202401010060",
            "20240101000062",
            "20240101ZZ",
            "20240101 Z",
            "+2024010",
            "19691231Z",
            "19700101Z",
            "now",
        ] {
            assert!(utc(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
