//! A tiny run of the load generator, so `make test` proves `make bench`
//! works: it starts a server, fans messages out, and loses none.

/// Runs `confab-bench --quick` against this build's server with `args`;
/// its stdout's JSON objects, one a line.
fn run_quick(args: &[&std::ffi::OsStr]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args(["--quick", "--server", env!("CARGO_BIN_EXE_confab-server")])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("confab-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn the_bench_tool_runs_a_small_fanout_and_loses_nothing() {
    // Issue 14: `--certs DIR` is made if absent, as --help says, and the
    // report names the measured server's own version and commit.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs-made-here");
    let report = dir.path().join("report.md");
    let lines = run_quick(&[
        "--certs".as_ref(),
        certs.as_os_str(),
        "--out".as_ref(),
        report.as_os_str(),
        "fanout".as_ref(),
        "burst".as_ref(),
    ]);
    assert_eq!(lines.len(), 2);
    for v in &lines {
        assert_eq!(v["lost"], 0, "{v}");
        assert!(v["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{v}");
    }
    // The paced fan-out: 10 members, 2 of whom send 20 messages each; each
    // message reaches the 9 others, and each sender gets its 20 acks.
    assert_eq!(lines[0]["scenario"], "fanout");
    assert_eq!(lines[0]["deliveries"], 40 * 9, "{}", lines[0]);
    assert_eq!(lines[0]["acked"], 40, "{}", lines[0]);
    // The burst: 2 extra sessions send 20 each to 10 receivers.
    assert_eq!(lines[1]["scenario"], "burst");
    assert_eq!(lines[1]["deliveries"], 400, "{}", lines[1]);
    assert!(certs.join("server.pem").exists(), "certificates were made");
    let report = std::fs::read_to_string(&report).unwrap();
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_confab-server"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&server.stdout).trim().to_owned();
    assert!(version.contains("(commit "), "{version}");
    assert!(
        report.contains(&format!("- Server: {version}")),
        "{version} not in:\n{report}"
    );
}

/// `storm-crowded` in small: the storm's rates, and chat in a room of its
/// own measured quiet and during a storm, with nothing lost.
#[test]
fn the_storm_scenario_measures_chat_during_the_storm_and_loses_nothing() {
    let lines = run_quick(&["storm-crowded".as_ref()]);
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["scenario"], "storm-crowded", "{v}");
    assert_eq!(v["chat_lost"], 0, "{v}");
    for figure in [
        "resumed_per_s",
        "registered_per_s",
        "chat_p99_ms_quiet",
        "chat_p99_ms_during_storm",
        "storm_sessions_per_s_during_chat",
    ] {
        assert!(v[figure].as_f64().unwrap() > 0.0, "{figure}: {v}");
    }
}
