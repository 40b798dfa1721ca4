//! The tool of plugins/examples/text-stats-ts, written in Rust, so the
//! benchmarks (`prx-bench languages`) compare one piece of work across
//! languages: `{"text": "...", "top": 3}` -> words, sentences, the most
//! frequent words, the reading time at `words_per_minute`, and a count of
//! the texts seen in kv. Same rules as the TypeScript: a word is a run of
//! anything but whitespace and ASCII punctuation other than `'`.

use std::collections::HashMap;

use prx_pdk::prelude::*;

pub struct TextStats;

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && (c == '\'' || !c.is_ascii_punctuation())
}

pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn most_frequent(words: &[String], n: usize) -> Vec<(String, u64)> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for w in words {
        *counts.entry(w).or_default() += 1;
    }
    let mut sorted: Vec<(String, u64)> =
        counts.into_iter().map(|(w, c)| (w.to_owned(), c)).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(n);
    sorted
}

impl Tool for TextStats {
    fn spec() -> ToolSpec {
        ToolSpec::new(
            "text_stats_rs",
            "Statistics of a text",
            r#"{"type":"object","properties":{"text":{"type":"string"},"top":{"type":"integer"}},"required":["text"]}"#,
        )
    }

    fn execute(args: &str) -> PluginResult {
        let args: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        let Some(text) = args["text"].as_str() else {
            return PluginResult::err(r#""text" must be a string"#);
        };
        let top = match &args["top"] {
            serde_json::Value::Null => 3,
            v => match v.as_u64().filter(|t| *t <= 50) {
                Some(t) => t as usize,
                None => return PluginResult::err(r#""top" must be a whole number from 0 to 50"#),
            },
        };
        let per_minute: f64 = config::get_or("words_per_minute", "230")
            .parse()
            .unwrap_or(0.0);
        if per_minute <= 0.0 {
            return PluginResult::err("words_per_minute in [config] must be a positive number");
        }
        let all = words(text);
        let sentences = text
            .split(['.', '!', '?'])
            .filter(|s| !s.trim().is_empty())
            .count();
        let seen = match kv::increment("texts_seen", 1) {
            Ok(n) => n,
            Err(e) => return PluginResult::err(format!("cannot count: {e}")),
        };
        log::debug(&format!("text {seen}: {} words", all.len()));
        let stats = serde_json::json!({
            "words": all.len(),
            "sentences": sentences,
            "top": most_frequent(&all, top),
            "reading_seconds": (all.len() as f64 / per_minute * 60.0).ceil() as u64,
            "texts_seen": seen,
        });
        PluginResult::ok(stats.to_string())
    }
}

export_tool!(TextStats);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_answers_as_the_typescript() {
        assert_eq!(
            words("It's 2 o'clock, Zoë!"),
            ["it's", "2", "o'clock", "zoë"]
        );
        let r = TextStats::execute(r#"{"text":"The cat sat. The cat ran!","top":2}"#);
        assert_eq!(
            r.output,
            r#"{"reading_seconds":2,"sentences":2,"texts_seen":1,"top":[["cat",2],["the",2]],"words":6}"#
        );
    }
}
