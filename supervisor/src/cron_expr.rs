//! Cron schedules as operators write them: five fields (minute, hour,
//! day of month, month, day of week), in UTC, with `*`, `*/n`, ranges
//! `a-b`, stepped ranges `a-b/n`, lists, month and weekday names, and day
//! of week 0-7 where both 0 and 7 are Sunday.
//!
//! The `cron` crate computes the fire times. It counts differently: it
//! has a seconds field first, numbers weekdays 1-7 from Sunday, and
//! requires a day to match both the day-of-month and the day-of-week
//! fields. Standard cron fires when *either* matches, if both are
//! restricted (a field that starts with `*`, `*/n` included, is not; then
//! both must match, as in the crate). So each field is
//! parsed here into the exact set of values it means, and handed to the
//! crate as an explicit list in its numbering. When both day fields are
//! restricted there are two schedules, one per field, and the next fire
//! time is the earlier of the two.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron expression {expr:?}: {why}")]
pub struct CronError {
    pub expr: String,
    pub why: String,
}

/// A parsed five-field expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    schedules: Vec<cron::Schedule>,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
/// 0-7, both 0 and 7 Sunday; names from Sunday.
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            // Names count from the field's first value: jan = 1, sun = 0.
            return Ok(self.min + i as u32);
        }
        let n: u32 = text
            .parse()
            .map_err(|_| format!("{}: {text:?} is not a number or a name", self.name))?;
        if n < self.min || n > self.max {
            return Err(format!(
                "{}: {n} is outside {}-{}",
                self.name, self.min, self.max
            ));
        }
        Ok(n)
    }

    /// The values a field means, and whether it restricts (does not start
    /// with `*`).
    fn parse(&self, text: &str) -> Result<(BTreeSet<u32>, bool), String> {
        let mut values = BTreeSet::new();
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => {
                    let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{}: step {step:?} must be a number above 0", self.name)
                    })?;
                    (range, step)
                }
                None => (part, 1),
            };
            let (from, to) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!("{}: range {range:?} runs backwards", self.name));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `5/10` means from 5 to the end, every 10.
                (a, if step > 1 { self.max } else { a })
            };
            values.extend((from..=to).step_by(step as usize));
        }
        Ok((values, !text.starts_with('*')))
    }
}

fn list(values: impl IntoIterator<Item = u32>) -> String {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let err = |why: String| CronError {
            expr: expr.into(),
            why,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(err(format!(
                "{} fields; expected 5 (minute hour day-of-month month day-of-week), e.g. \"*/5 * * * *\"",
                fields.len()
            )));
        };
        let (minutes, _) = MINUTE.parse(minute).map_err(err)?;
        let (hours, _) = HOUR.parse(hour).map_err(err)?;
        let (days, dom_restricted) = DAY_OF_MONTH.parse(dom).map_err(err)?;
        let (months, _) = MONTH.parse(month).map_err(err)?;
        let (weekdays, dow_restricted) = DAY_OF_WEEK.parse(dow).map_err(err)?;
        // 7 is Sunday too; the crate counts 1 (Sunday) to 7 (Saturday).
        let weekdays: BTreeSet<u32> = weekdays.into_iter().map(|d| d % 7 + 1).collect();
        let head = format!("0 {} {} ", list(minutes), list(hours));
        let month = list(months);
        let mut specs = Vec::new();
        if dom_restricted && dow_restricted {
            // Either day field may match.
            specs.push(format!("{head}{} {month} *", list(days)));
            specs.push(format!("{head}* {month} {}", list(weekdays)));
        } else {
            // Both must (one of them is all days, or a `*/n` set).
            specs.push(format!("{head}{} {month} {}", list(days), list(weekdays)));
        }
        let schedules = specs
            .iter()
            .map(|spec| cron::Schedule::from_str(spec).map_err(|e| err(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self { schedules })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|s| s.after(&t).next())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn next(expr: &str, from: DateTime<Utc>) -> DateTime<Utc> {
        CronSchedule::parse(expr).unwrap().next_after(from).unwrap()
    }

    #[test]
    fn steps_ranges_and_lists() {
        let t = at(2026, 11, 22, 10, 7); // a Sunday
        assert_eq!(next("*/15 * * * *", t), at(2026, 11, 22, 10, 15));
        assert_eq!(next("0-30/10 * * * *", t), at(2026, 11, 22, 10, 10));
        assert_eq!(next("5,50 * * * *", t), at(2026, 11, 22, 10, 50));
        assert_eq!(next("0 */6 * * *", t), at(2026, 11, 22, 12, 0));
        assert_eq!(next("30 9 * * *", t), at(2026, 11, 23, 9, 30));
        assert_eq!(next("0 0 1 * *", t), at(2026, 12, 1, 0, 0));
        assert_eq!(next("0 0 1 jan *", t), at(2027, 1, 1, 0, 0));
        // Strictly after: a fire time equal to `t` is not returned.
        assert_eq!(next("7 10 * * *", t), at(2026, 11, 23, 10, 7));
    }

    #[test]
    fn weekdays_count_from_sunday_zero_and_seven() {
        let saturday = at(2026, 11, 21, 12, 0);
        for sunday in ["0", "7", "sun", "SUN"] {
            assert_eq!(
                next(&format!("0 0 * * {sunday}"), saturday),
                at(2026, 11, 22, 0, 0),
                "{sunday}"
            );
        }
        // Monday to Friday, from a Saturday: Monday.
        assert_eq!(next("0 9 * * 1-5", saturday), at(2026, 11, 23, 9, 0));
        assert_eq!(next("0 9 * * mon-fri", saturday), at(2026, 11, 23, 9, 0));
        // Friday to Sunday (5-7 crosses the crate's wrap): from Monday,
        // the next is Friday.
        assert_eq!(
            next("0 9 * * 5-7", at(2026, 11, 23, 12, 0)),
            at(2026, 11, 27, 9, 0)
        );
        // Every other day from Sunday: Sun, Tue, Thu, Sat.
        assert_eq!(
            next("0 0 * * */2", at(2026, 11, 22, 1, 0)),
            at(2026, 11, 24, 0, 0)
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // The 1st, or any Monday: from Wed 25 Nov, the Monday (30 Nov)
        // comes before the 1st of December.
        assert_eq!(
            next("0 12 1 * 1", at(2026, 11, 25, 0, 0)),
            at(2026, 11, 30, 12, 0)
        );
        // From Tue 1 Dec 13:00, the next is Mon 7 Dec.
        assert_eq!(
            next("0 12 1 * 1", at(2026, 12, 1, 13, 0)),
            at(2026, 12, 7, 12, 0)
        );
        // A `*/n` day of week is not a restriction: both must match (the
        // 1st, and a day of the set).
        assert_eq!(
            next("0 0 1 * */7", at(2026, 11, 2, 0, 0)),
            at(2027, 8, 1, 0, 0)
        );
    }

    #[test]
    fn mistakes_say_which_field_and_why() {
        for (expr, why) in [
            ("* * * *", "4 fields; expected 5"),
            ("0 0 * * * *", "6 fields; expected 5"),
            ("60 * * * *", "minute: 60 is outside 0-59"),
            ("* 24 * * *", "hour: 24 is outside 0-23"),
            ("* * 0 * *", "day of month: 0 is outside 1-31"),
            ("* * * 13 *", "month: 13 is outside 1-12"),
            ("* * * * 8", "day of week: 8 is outside 0-7"),
            ("5-1 * * * *", "range \"5-1\" runs backwards"),
            ("*/0 * * * *", "step \"0\" must be a number above 0"),
            ("* * * * funday", "\"funday\" is not a number or a name"),
        ] {
            let err = CronSchedule::parse(expr).unwrap_err().to_string();
            assert!(err.contains(why), "{expr}: {err}");
        }
    }
}
