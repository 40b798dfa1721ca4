//! Misbehaves on request: `{"mode": "trap" | "spin" | "burn" | "grow" | "crash" | "wait" | "print" | "ok"}`.

use std::hint::black_box;

use prx_pdk::prelude::*;

struct Faulty;

impl Tool for Faulty {
    fn spec() -> ToolSpec {
        ToolSpec::new(
            "faulty",
            "Fails in the way it is asked to",
            r#"{"type":"object"}"#,
        )
    }

    fn execute(args: &str) -> PluginResult {
        let args: serde_json::Value = serde_json::from_str(args).unwrap_or_default();
        match args["mode"].as_str().unwrap_or("ok") {
            "trap" => panic!("faulty-tool was asked to trap"),
            "spin" => loop {
                black_box(0u64);
            },
            "burn" => {
                let mut x = 1u64;
                loop {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            // Logs the line a test supervisor configures as its abort
            // marker: the worker then dies the way a runtime bug would.
            "crash" => {
                log::info("prx-test-abort");
                PluginResult::ok("survived: no abort marker configured")
            }
            // Busy for `ms` milliseconds of wall-clock time, then answers.
            "wait" => {
                let ms = args["ms"].as_u64().unwrap_or(500);
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_millis(ms) {
                    black_box(0u64);
                }
                PluginResult::ok(format!("waited {ms} ms"))
            }
            "print" => {
                println!("line on stdout");
                eprintln!("line on stderr");
                PluginResult::ok("printed")
            }
            _ => PluginResult::ok("ok"),
        }
    }
}

export_tool!(Faulty);
