//! Schedule policies: when a schedule of each policy type is due, parsed strictly.
//!
//! Four types, as Stork's SchedulePolicy has them: `interval` (every N minutes since the last
//! run), `daily` (at a time of day), `weekly` (a day and a time) and `monthly` (a date and a
//! time). Times of day are read in the controller's time zone, as `3:04PM` (the forms Stork
//! accepts: hour 1-12 without a leading zero or with one, minutes, AM or PM) or 24-hour
//! `15:04`. A monthly date past the end of a short month fires on that month's last day.
//! Across a daylight-saving change a time that does not exist that day fires at the same
//! offset after the gap (02:30 becomes 03:30), and a time that occurs twice fires once, at
//! the first.
//!
//! Missed slots collapse: a schedule is due when the newest slot at or before now is after
//! its last run, however many slots passed since.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// One policy type with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Every `minutes` minutes since the last run.
    Interval {
        /// Minutes between runs (at least 1).
        minutes: u32,
    },
    /// Every day at `time`.
    Daily {
        /// Time of day.
        time: Time,
    },
    /// Every week on `day` at `time`.
    Weekly {
        /// Day of the week.
        day: Weekday,
        /// Time of day.
        time: Time,
    },
    /// Every month on `date` (1-31; the month's last day when it is shorter) at `time`.
    Monthly {
        /// Day of the month.
        date: i8,
        /// Time of day.
        time: Time,
    },
}

impl Slot {
    /// The policy type's name, used in the Migrations a schedule creates.
    pub fn kind(&self) -> &'static str {
        match self {
            Slot::Interval { .. } => "interval",
            Slot::Daily { .. } => "daily",
            Slot::Weekly { .. } => "weekly",
            Slot::Monthly { .. } => "monthly",
        }
    }
}

/// Parses a time of day: `10:30PM`, `1:05am`, `10:30 PM`, or 24-hour `22:30`.
///
/// # Errors
/// A message naming the value and the accepted forms.
pub fn parse_time(s: &str) -> Result<Time, String> {
    let bad = || {
        format!(
            "time {s:?} is not a time of day: use 10:30PM (12-hour, AM or PM) or 22:30 (24-hour)"
        )
    };
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    let (clock, meridiem) = match upper
        .strip_suffix("AM")
        .or_else(|| upper.strip_suffix("PM"))
    {
        Some(rest) => (rest.trim_end(), Some(upper.ends_with("PM"))),
        None => (upper.as_str(), None),
    };
    let (h, m) = clock.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || m.len() != 2 || !digits(m) {
        return Err(bad());
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 {
        return Err(bad());
    }
    let hour = match meridiem {
        Some(pm) => {
            if !(1..=12).contains(&h) {
                return Err(bad());
            }
            match (h, pm) {
                (12, false) => 0,
                (12, true) => 12,
                (h, true) => h + 12,
                (h, false) => h,
            }
        }
        None if clock.len() == 5 && (0..=23).contains(&h) => h,
        None => return Err(bad()),
    };
    Time::new(hour, m, 0, 0).map_err(|_| bad())
}

/// Parses a day of the week: `Monday` or `Mon`, any case.
///
/// # Errors
/// A message naming the value.
pub fn parse_day(s: &str) -> Result<Weekday, String> {
    let d = s.trim().to_ascii_lowercase();
    let days = [
        ("sunday", Weekday::Sunday),
        ("monday", Weekday::Monday),
        ("tuesday", Weekday::Tuesday),
        ("wednesday", Weekday::Wednesday),
        ("thursday", Weekday::Thursday),
        ("friday", Weekday::Friday),
        ("saturday", Weekday::Saturday),
    ];
    days.iter()
        .find(|(name, _)| d == *name || (d.len() == 3 && name.starts_with(&d)))
        .map(|(_, w)| *w)
        .ok_or_else(|| format!("day {s:?} is not a day of the week (Monday, or Mon)"))
}

/// Checks a monthly date.
///
/// # Errors
/// A message when it is not 1 to 31.
pub fn check_date(date: i64) -> Result<i8, String> {
    if (1..=31).contains(&date) {
        Ok(date as i8)
    } else {
        Err(format!("date {date} is not a day of the month (1 to 31)"))
    }
}

/// The slot on civil date `d`, if the policy fires that day.
fn slot_on(slot: &Slot, d: Date, tz: &TimeZone) -> Option<Timestamp> {
    let time = match *slot {
        Slot::Interval { .. } => return None,
        Slot::Daily { time } => time,
        Slot::Weekly { day, time } => {
            if d.weekday() != day {
                return None;
            }
            time
        }
        Slot::Monthly { date, time } => {
            let fires = date.min(d.days_in_month());
            if d.day() != fires {
                return None;
            }
            time
        }
    };
    // `compatible`: a time in a gap moves forward by the gap, a repeated time takes the
    // first occurrence.
    d.to_datetime(time)
        .to_zoned(tz.clone())
        .ok()
        .map(|z| z.timestamp())
}

/// Calendar days searched for a slot (a monthly slot is at most 31 days away; two months
/// leave room for a short month).
const SEARCH_DAYS: i64 = 63;

/// The newest slot at or before `t`.
pub fn latest_at_or_before(slot: &Slot, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let today = t.to_zoned(tz.clone()).date();
    (0..SEARCH_DAYS)
        .filter_map(|back| today.checked_sub(back.days()).ok())
        .filter_map(|d| slot_on(slot, d, tz))
        .find(|s| *s <= t)
}

/// The first slot strictly after `t`.
pub fn next_after(slot: &Slot, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let today = t.to_zoned(tz.clone()).date();
    (-1..SEARCH_DAYS)
        .filter_map(|fwd| today.checked_add(fwd.days()).ok())
        .filter_map(|d| slot_on(slot, d, tz))
        .find(|s| *s > t)
}

/// Whether a schedule whose last run (or, never run, its creation) was at `last` is due at
/// `now`: once, however many slots it missed.
pub fn is_due(slot: &Slot, last: Timestamp, now: Timestamp, tz: &TimeZone) -> bool {
    match *slot {
        Slot::Interval { minutes } => now >= interval_next(last, minutes),
        _ => latest_at_or_before(slot, now, tz).is_some_and(|s| s > last),
    }
}

/// When a schedule whose last run was at `last` is next due, seen at `now`: `now` itself when
/// it is due already.
pub fn next_due(slot: &Slot, last: Timestamp, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    if is_due(slot, last, now, tz) {
        return Some(now);
    }
    match *slot {
        Slot::Interval { minutes } => Some(interval_next(last, minutes)),
        _ => next_after(slot, now, tz),
    }
}

fn interval_next(last: Timestamp, minutes: u32) -> Timestamp {
    last.checked_add((i64::from(minutes)).minutes())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ny() -> TimeZone {
        TimeZone::get("America/New_York").unwrap()
    }

    #[test]
    fn times_of_day_parse_strictly() {
        let ok = [
            ("10:30PM", (22, 30)),
            ("10:30pm", (22, 30)),
            ("10:30 PM", (22, 30)),
            ("1:05AM", (1, 5)),
            ("01:05AM", (1, 5)),
            ("12:00AM", (0, 0)),
            ("12:00PM", (12, 0)),
            ("12:59PM", (12, 59)),
            ("00:00", (0, 0)),
            ("23:59", (23, 59)),
            ("09:15", (9, 15)),
        ];
        for (s, (h, m)) in ok {
            assert_eq!(parse_time(s), Ok(Time::new(h, m, 0, 0).unwrap()), "{s}");
        }
        let bad = [
            "", "10", "10:3PM", "13:00PM", "0:30AM", "10:60PM", "24:00", "9:15", "10:30XM",
            "ten:30", "10:30:00", "-1:30PM", "10.30PM", "22:30PM",
        ];
        for s in bad {
            let e = parse_time(s).unwrap_err();
            assert!(e.contains("10:30PM") && e.contains("22:30"), "{s}: {e}");
        }
    }

    #[test]
    fn days_and_dates_parse_strictly() {
        assert_eq!(parse_day("Thursday"), Ok(Weekday::Thursday));
        assert_eq!(parse_day("thu"), Ok(Weekday::Thursday));
        assert_eq!(parse_day("SUN"), Ok(Weekday::Sunday));
        for bad in ["Thurs", "t", "", "Funday"] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        assert_eq!(check_date(1), Ok(1));
        assert_eq!(check_date(31), Ok(31));
        assert!(check_date(0).is_err());
        assert!(check_date(32).is_err());
    }

    #[test]
    fn next_due_table() {
        let utc = TimeZone::UTC;
        let t = |s| parse_time(s).unwrap();
        // (slot, last run, now, due?, next due)
        let cases: Vec<(Slot, &str, &str, bool, &str)> = vec![
            // Intervals count from the last run.
            (
                Slot::Interval { minutes: 60 },
                "2026-03-01T10:00:00Z",
                "2026-03-01T10:59:59Z",
                false,
                "2026-03-01T11:00:00Z",
            ),
            (
                Slot::Interval { minutes: 60 },
                "2026-03-01T10:00:00Z",
                "2026-03-01T11:00:00Z",
                true,
                "2026-03-01T11:00:00Z",
            ),
            (
                Slot::Interval { minutes: 1 },
                "2026-12-31T23:59:30Z",
                "2027-01-01T00:00:30Z",
                true,
                "2027-01-01T00:00:30Z",
            ),
            // A controller down for three slots runs once when it returns.
            (
                Slot::Interval { minutes: 10 },
                "2026-03-01T10:00:00Z",
                "2026-03-01T10:35:00Z",
                true,
                "2026-03-01T10:35:00Z",
            ),
            // Daily: day boundaries.
            (
                Slot::Daily { time: t("11:30PM") },
                "2026-03-01T23:30:00Z",
                "2026-03-02T23:29:59Z",
                false,
                "2026-03-02T23:30:00Z",
            ),
            (
                Slot::Daily { time: t("11:30PM") },
                "2026-03-01T23:30:00Z",
                "2026-03-02T23:30:00Z",
                true,
                "2026-03-02T23:30:00Z",
            ),
            (
                Slot::Daily { time: t("00:00") },
                "2026-12-31T00:00:00Z",
                "2026-12-31T23:59:00Z",
                false,
                "2027-01-01T00:00:00Z",
            ),
            // Down for three days: due once; after that run the next slot is tomorrow's.
            (
                Slot::Daily { time: t("6:00AM") },
                "2026-03-01T06:00:00Z",
                "2026-03-04T12:00:00Z",
                true,
                "2026-03-04T12:00:00Z",
            ),
            (
                Slot::Daily { time: t("6:00AM") },
                "2026-03-04T12:00:00Z",
                "2026-03-04T13:00:00Z",
                false,
                "2026-03-05T06:00:00Z",
            ),
            // Weekly.
            (
                Slot::Weekly {
                    day: Weekday::Thursday,
                    time: t("10:13PM"),
                },
                "2026-11-26T22:13:00Z",
                "2026-12-02T12:00:00Z",
                false,
                "2026-12-03T22:13:00Z",
            ),
            (
                Slot::Weekly {
                    day: Weekday::Thursday,
                    time: t("10:13PM"),
                },
                "2026-11-05T22:13:00Z",
                "2026-12-02T12:00:00Z",
                true,
                "2026-12-02T12:00:00Z",
            ),
            // Monthly: month ends and leap days.
            (
                Slot::Monthly {
                    date: 31,
                    time: t("8:05PM"),
                },
                "2026-01-31T20:05:00Z",
                "2026-02-27T00:00:00Z",
                false,
                "2026-02-28T20:05:00Z",
            ),
            (
                Slot::Monthly {
                    date: 31,
                    time: t("8:05PM"),
                },
                "2026-02-28T20:05:00Z",
                "2026-03-30T00:00:00Z",
                false,
                "2026-03-31T20:05:00Z",
            ),
            (
                Slot::Monthly {
                    date: 30,
                    time: t("8:05PM"),
                },
                "2027-01-30T20:05:00Z",
                "2027-02-01T00:00:00Z",
                false,
                "2027-02-28T20:05:00Z",
            ),
            (
                Slot::Monthly {
                    date: 29,
                    time: t("00:00"),
                },
                "2028-01-29T00:00:00Z",
                "2028-02-01T00:00:00Z",
                false,
                "2028-02-29T00:00:00Z",
            ),
            (
                Slot::Monthly {
                    date: 29,
                    time: t("00:00"),
                },
                "2027-01-29T00:00:00Z",
                "2027-02-01T00:00:00Z",
                false,
                "2027-02-28T00:00:00Z",
            ),
            (
                Slot::Monthly {
                    date: 14,
                    time: t("00:00"),
                },
                "2026-09-14T00:00:00Z",
                "2026-12-20T00:00:00Z",
                true,
                "2026-12-20T00:00:00Z",
            ),
        ];
        for (slot, last, now, due, next) in cases {
            let (last, now) = (ts(last), ts(now));
            assert_eq!(
                is_due(&slot, last, now, &utc),
                due,
                "{slot:?} last {last} now {now}"
            );
            assert_eq!(
                next_due(&slot, last, now, &utc),
                Some(ts(next)),
                "{slot:?} last {last} now {now}"
            );
        }
    }

    #[test]
    fn daylight_saving_changes_of_the_controllers_zone() {
        let tz = ny();
        let t = |s| parse_time(s).unwrap();
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT. 2:30AM does not exist: it fires at 3:30
        // EDT (07:30Z), once.
        let spring = Slot::Daily { time: t("2:30AM") };
        let before = ts("2026-03-07T07:30:00Z"); // 2:30 EST the day before
        assert_eq!(
            next_after(&spring, before, &tz),
            Some(ts("2026-03-08T07:30:00Z"))
        );
        assert_eq!(
            next_after(&spring, ts("2026-03-08T07:30:00Z"), &tz),
            Some(ts("2026-03-09T06:30:00Z"))
        );
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST. 1:30AM occurs twice; it fires at the
        // first (05:30Z), not again an hour later.
        let fall = Slot::Daily { time: t("1:30AM") };
        let first = ts("2026-11-01T05:30:00Z");
        assert_eq!(
            next_after(&fall, ts("2026-10-31T12:00:00Z"), &tz),
            Some(first)
        );
        assert!(
            !is_due(&fall, first, ts("2026-11-01T06:45:00Z"), &tz),
            "not twice"
        );
        assert_eq!(
            next_after(&fall, first, &tz),
            Some(ts("2026-11-02T06:30:00Z"))
        );
        // Daily at 10:00 local keeps local time across the change: 15:00Z in winter,
        // 14:00Z in summer.
        let ten = Slot::Daily { time: t("10:00") };
        assert_eq!(
            next_after(&ten, ts("2026-03-07T16:00:00Z"), &tz),
            Some(ts("2026-03-08T14:00:00Z"))
        );
        // Intervals are elapsed time: a change of offset neither adds nor drops a run.
        let hourly = Slot::Interval { minutes: 60 };
        assert_eq!(
            next_due(
                &hourly,
                ts("2026-11-01T05:30:00Z"),
                ts("2026-11-01T06:00:00Z"),
                &tz
            ),
            Some(ts("2026-11-01T06:30:00Z"))
        );
    }
}
