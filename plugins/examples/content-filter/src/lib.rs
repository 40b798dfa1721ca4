//! A content filter: on `inbound`, refuses text containing a blocked word
//! (`[config] blocked`, comma-separated) and marks what it let through
//! with `processed_by`. Other stages pass unchanged.

use prx_pdk::prelude::*;

pub struct ContentFilter;

const DEFAULT_BLOCKED: &str = "BLOCKED_WORD";

impl Middleware for ContentFilter {
    fn process(stage: &str, data_json: &str) -> Result<String, String> {
        if stage != "inbound" {
            return Ok(data_json.to_owned());
        }
        let mut data: serde_json::Value = serde_json::from_str(data_json)
            .map_err(|e| format!("inbound data is not JSON: {e}"))?;
        let text = data["text"].as_str().unwrap_or_default().to_lowercase();
        let blocked = config::get("blocked").unwrap_or_else(|| DEFAULT_BLOCKED.into());
        for word in blocked.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if text.contains(&word.to_lowercase()) {
                log::info(&format!("blocked an inbound message containing {word:?}"));
                return Err(format!("content policy violation: {word:?} is not allowed"));
            }
        }
        data["processed_by"] = serde_json::json!("content-filter/0.1.0");
        Ok(data.to_string())
    }
}

export_middleware!(ContentFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_listed_words_and_marks_the_rest() {
        prx_pdk::testing::set_config("blocked", "spam, scam");
        let err = __prx_middleware_process("inbound", r#"{"text":"a SCAM offer"}"#).unwrap_err();
        assert!(err.contains("scam"), "{err}");
        let ok = __prx_middleware_process("inbound", r#"{"text":"hello"}"#).unwrap();
        let ok: serde_json::Value = serde_json::from_str(&ok).unwrap();
        assert_eq!(ok["processed_by"], "content-filter/0.1.0");
        assert_eq!(ok["text"], "hello");
    }

    #[test]
    fn other_stages_pass_unchanged() {
        let data = r#"{"text":"BLOCKED_WORD"}"#;
        assert_eq!(__prx_middleware_process("outbound", data).unwrap(), data);
    }
}
