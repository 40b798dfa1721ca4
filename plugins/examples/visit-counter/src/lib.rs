//! Counts visits per name in the plugin's kv store and remembers who came
//! last: `{"name": "ada"}` -> `ada has visited 3 times (last visitor: bob)`.
//! Each visit is also published on the event bus as `visit-counter.visited`
//! with `{"name": .., "count": ..}`, for any subscriber that cares.

use prx_pdk::prelude::*;

pub struct VisitCounter;

impl Tool for VisitCounter {
    fn spec() -> ToolSpec {
        ToolSpec::new(
            "visit",
            "Counts a visit by `name` and says how many there were.",
            r#"{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}"#,
        )
    }

    fn execute(args: &str) -> PluginResult {
        let args: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        let Some(name) = args["name"].as_str().filter(|n| !n.is_empty()) else {
            return PluginResult::err("missing 'name' parameter");
        };
        let count = match kv::increment(&format!("visits:{name}"), 1) {
            Ok(n) => n,
            Err(e) => return PluginResult::err(format!("cannot count: {e}")),
        };
        let last = kv::get_str("last").unwrap_or_else(|| "nobody".into());
        if let Err(e) = kv::set_str("last", name) {
            log::warn(&format!("cannot remember the last visitor: {e}"));
        }
        // Events are optional: without the permission the count still works.
        let visited = serde_json::json!({ "name": name, "count": count });
        if let Err(e) = events::publish_json("visit-counter.visited", &visited) {
            log::debug(&format!("visit not published: {e}"));
        }
        let times = if count == 1 { "time" } else { "times" };
        PluginResult::ok(format!(
            "{name} has visited {count} {times} (last visitor: {last})"
        ))
    }
}

export_tool!(VisitCounter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_name_and_remembers_the_last() {
        let r = VisitCounter::execute(r#"{"name":"ada"}"#);
        assert_eq!(r.output, "ada has visited 1 time (last visitor: nobody)");
        VisitCounter::execute(r#"{"name":"bob"}"#);
        let r = VisitCounter::execute(r#"{"name":"ada"}"#);
        assert_eq!(r.output, "ada has visited 2 times (last visitor: bob)");
        assert_eq!(
            prx_pdk::kv::list_keys("visits:"),
            ["visits:ada", "visits:bob"]
        );
        let published = prx_pdk::testing::published();
        assert_eq!(published.len(), 3);
        assert_eq!(
            published[2],
            (
                "visit-counter.visited".to_owned(),
                r#"{"count":2,"name":"ada"}"#.to_owned()
            )
        );
    }
}
