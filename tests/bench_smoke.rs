//! A tiny run of the load generator, so `make test` proves `make bench`
//! works: it starts a server, fans messages out, and loses none.

#[test]
fn the_bench_tool_runs_a_small_fanout_and_loses_nothing() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args([
            "--quick",
            "--server",
            env!("CARGO_BIN_EXE_confab-server"),
            "fanout",
            "burst",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("confab-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for v in &lines {
        assert_eq!(v["lost"], 0, "{v}");
        assert_eq!(v["deliveries"], 400, "{v}");
        assert!(v["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{v}");
    }
}
