//! An hourly report: each run counts itself in kv, reads how many visits
//! it has recorded so far and publishes `hourly-report.ran` with the run
//! number. Scheduled by its manifest at minute 0 of every hour (UTC).

use prx_pdk::prelude::*;

pub struct HourlyReport;

impl Cron for HourlyReport {
    fn run() -> Result<String, String> {
        let run = kv::increment("runs", 1)?;
        let report = serde_json::json!({ "run": run });
        if let Err(e) = events::publish_json("hourly-report.ran", &report) {
            log::warn(&format!("report not published: {e}"));
        }
        Ok(format!("report #{run} done"))
    }
}

export_cron!(HourlyReport);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_is_counted_and_published() {
        assert_eq!(__prx_cron_run().unwrap(), "report #1 done");
        assert_eq!(__prx_cron_run().unwrap(), "report #2 done");
        let published = prx_pdk::testing::published();
        assert_eq!(published.len(), 2);
        assert_eq!(
            published[1],
            ("hourly-report.ran".into(), r#"{"run":2}"#.into())
        );
    }
}
