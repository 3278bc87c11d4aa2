//! Runs the built `podfwd` binary the way users and the external tests do.

use std::path::PathBuf;
use std::process::{Command, Output};

fn podfwd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podfwd"))
        .args(args)
        .output()
        .expect("podfwd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/podfwd.example.toml").to_string()
}

/// A file in this test binary's scratch directory, unique to the test.
/// Writes `contents` to the scratch file `name`. Tests run in parallel and several write
/// the same file while others run podfwd on it, so the file is replaced atomically (a
/// reader never sees it half written; measured: a run read an empty config once).
fn scratch_file(name: &str, contents: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}", std::process::id()));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

#[test]
fn check_accepts_the_example_and_prints_the_peer_and_its_next_hop() {
    let out = podfwd(&["check", "--config", &example()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    let route = stdout
        .lines()
        .find(|l| l.contains("10.244.1.0/24"))
        .unwrap_or_else(|| panic!("no route for the peer in:\n{stdout}"));
    assert!(
        route.contains("vxlan to 10.168.0.3 vtep 0e:00:00:00:00:0b"),
        "{route}"
    );
    assert!(route.contains("peers[0]"), "{route}");
    assert!(stdout.contains("nodeA-ul"), "{stdout}");
}

#[test]
fn check_prints_what_podfwd_installs_in_the_kernel() {
    let out = podfwd(&["check", "--config", &example()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let section = stdout
        .split_once("kernel (installed by podfwd run, kept when it stops):\n")
        .unwrap_or_else(|| panic!("no kernel section in:\n{stdout}"))
        .1;
    for expected in [
        "  ip link add podfwd.1 type vxlan id 1 local 10.168.0.2 dev nodeA-ul nolearning dstport 8472\n",
        "  ip addr add 10.244.0.0/32 dev podfwd.1\n",
        "  ip neigh add 10.244.1.0 lladdr 0e:00:00:00:00:0b dev podfwd.1 nud permanent\n",
        "  bridge fdb add 0e:00:00:00:00:0b dev podfwd.1 dst 10.168.0.3 self permanent\n",
        "  ip route add 10.244.1.0/24 via 10.244.1.0 dev podfwd.1 onlink proto 112\n",
    ] {
        assert!(section.contains(expected), "{expected:?} not in:\n{section}");
    }
}

#[test]
fn cleanup_of_a_missing_file_says_so() {
    let out = podfwd(&["cleanup", "--config", "/nonexistent/podfwd.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "podfwd: error: config file /nonexistent/podfwd.toml does not exist"
    );
}

#[test]
fn check_rejects_a_broken_file_naming_the_field() {
    let example = std::fs::read_to_string(example()).unwrap();
    let broken = example.replace("\"0e:00:00:00:00:0b\"", "\"zz:00\"");
    assert_ne!(broken, example);
    let path = scratch_file("broken-vtep.toml", &broken);
    let out = podfwd(&["check", "--config", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("podfwd: error: "), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("peers[0].vtep_mac: \"zz:00\" is not a MAC address"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for an invalid config"
    );
}

#[test]
fn check_rejects_an_unknown_key_with_its_line() {
    let example = std::fs::read_to_string(example()).unwrap();
    let path = scratch_file(
        "unknown-key.toml",
        &example.replace("queues = 1", "queue = 1"),
    );
    let out = podfwd(&["check", "--config", path.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("unknown field `queue`"), "{stderr}");
    assert!(stderr.contains("line "), "{stderr}");
}

#[test]
fn check_of_a_missing_file_says_so() {
    let out = podfwd(&["check", "--config", "/nonexistent/podfwd.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "podfwd: error: config file /nonexistent/podfwd.toml does not exist"
    );
}

#[test]
fn help_lists_the_subcommands_and_explains_their_options() {
    let out = podfwd(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for sub in ["run", "check", "lab", "stats", "routes", "trace", "cleanup"] {
        assert!(
            help.contains(&format!("  {sub} ")),
            "{sub} missing from:\n{help}"
        );
    }
    for (sub, options) in [
        ("run", &["--config <FILE>", "--stats-interval <SECS>"][..]),
        ("check", &["--config <FILE>"][..]),
        (
            "lab",
            &["--mode <MODE>", "--backend <BACKEND>", "host-gw", "afxdp"][..],
        ),
        ("stats", &["--json", "--socket <PATH>"][..]),
        ("routes", &["--json", "--socket <PATH>"][..]),
        (
            "trace",
            &[
                "--drops",
                "--count <N>",
                "--write <FILE.pcapng>",
                "--socket <PATH>",
            ][..],
        ),
        ("cleanup", &["--config <FILE>"][..]),
    ] {
        let out = podfwd(&[sub, "--help"]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for option in options {
            assert!(
                help.contains(option),
                "{option} missing from `{sub} --help`:\n{help}"
            );
        }
    }
}

#[test]
fn run_without_a_config_is_a_usage_error() {
    let out = podfwd(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--config <FILE>"));
}

#[test]
fn routes_without_a_running_instance_fails_with_a_clear_message() {
    for args in [
        &["routes", "--socket", "/nonexistent/podfwd.sock"][..],
        &["routes", "--json", "--socket", "/nonexistent/podfwd.sock"][..],
    ] {
        let out = podfwd(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("podfwd: error: control socket /nonexistent/podfwd.sock: ")
                && stderr.contains("no podfwd is running"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn routes_with_an_unknown_option_is_a_usage_error() {
    let out = podfwd(&["routes", "--table"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--table"));
}

#[test]
fn stats_interval_help_says_the_line_goes_to_stderr() {
    let out = podfwd(&["run", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("every SECS seconds"), "{help}");
    assert!(
        help.contains("to stderr") && !help.contains("to stdout"),
        "{help}"
    );
}

#[test]
fn stats_without_a_running_instance_fails_with_a_clear_message() {
    let out = podfwd(&["stats", "--json", "--socket", "/nonexistent/podfwd.sock"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("podfwd: error: ") && stderr.contains("no podfwd is running"),
        "{stderr}"
    );
}

#[test]
fn trace_without_a_running_instance_fails_with_a_clear_message() {
    let out = podfwd(&["trace", "--drops", "--socket", "/nonexistent/podfwd.sock"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("podfwd: error: ") && stderr.contains("no podfwd is running there"),
        "{stderr}"
    );
    assert_eq!(podfwd(&["trace", "--count", "0"]).status.code(), Some(2));
}

/// The subcommands `podfwd --help` lists (its "Commands:" section), without `help`.
fn subcommands() -> Vec<String> {
    let help = text(&podfwd(&["--help"]).stdout);
    let section = help
        .split_once("Commands:\n")
        .unwrap_or_else(|| panic!("no Commands: section in:\n{help}"))
        .1;
    let names: Vec<String> = section
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 7, "{names:?}");
    names
}

/// What `git rev-parse --short HEAD` says about the source tree, if it is a checkout.
fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_crate_version_git_revision_and_features() {
    let out = podfwd(&["--version"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let long = text(&out.stdout);
    assert!(
        long.starts_with(&format!("podfwd {}\n", env!("CARGO_PKG_VERSION"))),
        "{long}"
    );
    let revision = long
        .lines()
        .find_map(|l| l.strip_prefix("revision: "))
        .unwrap_or_else(|| panic!("no revision line in:\n{long}"));
    match git_head() {
        // The build may have been dirty; the commit is the same.
        Some(head) => assert!(
            revision == head || revision == format!("{head}-dirty"),
            "revision {revision:?}, HEAD {head:?}"
        ),
        None => assert_eq!(revision, "unknown"),
    }
    assert!(long.contains("\nfeatures: "), "{long}");
    let short = text(&podfwd(&["-V"]).stdout);
    assert_eq!(
        short.trim(),
        format!("podfwd {} ({revision})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bash_completion_is_valid_bash_and_completes_every_subcommand() {
    let out = podfwd(&["completions", "bash"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let script = scratch_file("podfwd.bash", &text(&out.stdout));
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
    // Source it and ask for the completions of `podfwd <TAB>` as bash would.
    let ask = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(podfwd ''); COMP_CWORD=1; COMP_LINE='podfwd '; \
             COMP_POINT=7; _podfwd podfwd '' podfwd; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let offered = text(&ask.stdout);
    for sub in subcommands() {
        assert!(
            offered.lines().any(|l| l == sub),
            "{sub} not completed; offered:\n{offered}"
        );
    }
    let unknown = podfwd(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn man_page_renders_and_documents_every_subcommand() {
    let out = podfwd(&["man"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(".ie"), "not roff");
    // groff (Debian groff-base, also what man(1) runs) renders it; -ww: all warnings.
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff runs (Debian package groff-base, see tools/setup.sh)");
    use std::io::Write;
    groff.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let rendered = groff.wait_with_output().unwrap();
    assert!(rendered.status.success());
    assert_eq!(text(&rendered.stderr), "", "groff warnings");
    // Rendered text: drop overstriking (bold is "x\bx") and the hyphenation's U+2010.
    let page = text(&rendered.stdout);
    let mut plain = String::new();
    for c in page.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    let plain = plain.replace("\u{2010}\n", "").replace('\u{2010}', "-");
    assert!(plain.contains("SUBCOMMANDS"), "{plain}");
    for sub in subcommands() {
        assert!(
            plain.contains(&format!("podfwd {sub}\n")),
            "podfwd {sub} missing from the rendered man page:\n{plain}"
        );
    }
    for option in [
        "--config <FILE>",
        "--stats-interval <SECS>",
        "--socket <PATH>",
    ] {
        assert!(plain.contains(option), "{option} missing:\n{plain}");
    }
}

#[test]
fn check_shows_where_metrics_are_served_and_rejects_a_bad_listen_address() {
    let off = text(&podfwd(&["check", "--config", &example()]).stdout);
    let example = std::fs::read_to_string(example()).unwrap();
    assert!(!off.contains("metrics "), "{off}");
    let on = example.replace(
        "# listen = \"127.0.0.1:9472\"",
        "listen = \"127.0.0.1:9472\"",
    );
    assert_ne!(on, example, "the example documents [metrics] listen");
    let path = scratch_file("metrics-on.toml", &on);
    let out = podfwd(&["check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("metrics       http://127.0.0.1:9472/metrics\n"),
        "{}",
        text(&out.stdout)
    );
    let bad = on.replace("listen = \"127.0.0.1:9472\"", "listen = \"localhost:9472\"");
    let path = scratch_file("metrics-bad.toml", &bad);
    let out = podfwd(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("metrics.listen: \"localhost:9472\" is not an IP address and port"),
        "{stderr}"
    );
}

/// A node whose uplink does not exist on this machine: `podfwd run` logs that it starts
/// and reads the config (at debug), then fails before it touches the network or needs
/// root.
fn missing_uplink_config() -> String {
    let path = scratch_file(
        "missing-uplink.toml",
        "[node]\nip = \"10.168.0.2\"\npod_cidr = \"10.244.0.0/24\"\nuplink = \"podfwd-nx0\"\n\
         pod_interfaces = [\"podfwd-nx1\"]\n[vxlan]\nvtep_mac = \"0e:00:00:00:00:0a\"\n",
    );
    path.to_str().unwrap().to_string()
}

const MISSING_UPLINK: &str =
    "podfwd: error: uplink \"podfwd-nx0\" (node.uplink) does not exist on this machine";

/// `podfwd ARGS` with RUST_LOG as given (and no journal): exit status and stderr.
fn logged(args: &[&str], rust_log: Option<&str>) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podfwd"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM");
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let out = cmd.output().expect("podfwd runs");
    (out.status.code(), text(&out.stderr))
}

#[test]
fn run_logs_at_info_by_default_with_fields_and_keeps_the_error_line() {
    let config = missing_uplink_config();
    let (code, stderr) = logged(&["run", "--config", &config], None);
    assert_eq!(code, Some(1), "{stderr}");
    let start = stderr
        .lines()
        .find(|l| l.contains(" INFO podfwd::cli: starting "))
        .unwrap_or_else(|| panic!("no start line:\n{stderr}"));
    // A timestamp first, the fields after the message.
    assert!(start.starts_with("20") && start.contains("Z "), "{start}");
    assert!(start.contains(&format!("config={config}")), "{start}");
    assert!(start.contains("version=\""), "{start}");
    assert!(!stderr.contains("DEBUG"), "{stderr}");
    assert_eq!(stderr.lines().last(), Some(MISSING_UPLINK), "{stderr}");
}

#[test]
fn log_level_warn_suppresses_info_and_wins_over_rust_log() {
    let config = missing_uplink_config();
    for rust_log in [None, Some("debug")] {
        let (code, stderr) = logged(
            &["run", "--log-level", "warn", "--config", &config],
            rust_log,
        );
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(
            stderr,
            format!("{MISSING_UPLINK}\n"),
            "RUST_LOG={rust_log:?}"
        );
    }
    // The flag is global: before the subcommand too.
    let (_, stderr) = logged(&["--log-level", "error", "run", "--config", &config], None);
    assert_eq!(stderr, format!("{MISSING_UPLINK}\n"));
    let (_, stderr) = logged(
        &["run", "--log-level", "info", "--config", &config],
        Some("debug"),
    );
    assert!(
        stderr.contains(" INFO ") && !stderr.contains("DEBUG"),
        "{stderr}"
    );
}

#[test]
fn rust_log_shows_debug_lines_also_per_module() {
    let config = missing_uplink_config();
    for rust_log in ["debug", "warn,podfwd::cli=debug"] {
        let (code, stderr) = logged(&["run", "--config", &config], Some(rust_log));
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(" DEBUG podfwd::cli: reading the config config="),
            "RUST_LOG={rust_log}: {stderr}"
        );
    }
    let (_, stderr) = logged(&["run", "--log-level", "debug", "--config", &config], None);
    assert!(
        stderr.contains(" DEBUG podfwd::cli: reading the config"),
        "{stderr}"
    );
    // Other modules only: podfwd::cli stays quiet.
    let (_, stderr) = logged(&["run", "--config", &config], Some("podfwd::control=debug"));
    assert_eq!(stderr, format!("{MISSING_UPLINK}\n"));
}

#[test]
fn an_unusable_rust_log_is_said_and_the_default_applies() {
    let config = missing_uplink_config();
    let (code, stderr) = logged(&["run", "--config", &config], Some("podfwd=loud"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(" WARN podfwd::log: RUST_LOG=\"podfwd=loud\" ignored"),
        "{stderr}"
    );
    assert!(stderr.contains(" INFO podfwd::cli: starting"), "{stderr}");
}

#[test]
fn every_log_level_name_parses_and_a_bad_one_is_a_usage_error() {
    let config = missing_uplink_config();
    for level in ["error", "warn", "info", "debug", "trace"] {
        let (code, stderr) = logged(&["run", "--log-level", level, "--config", &config], None);
        assert_eq!(code, Some(1), "{level}: {stderr}");
        assert!(
            stderr.ends_with(&format!("{MISSING_UPLINK}\n")),
            "{level}: {stderr}"
        );
    }
    let (code, stderr) = logged(&["run", "--log-level", "loud", "--config", &config], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'loud' for '--log-level <LEVEL>'")
            && stderr.contains("[possible values: error, warn, info, debug, trace]"),
        "{stderr}"
    );
    let (code, stderr) = logged(&["stats", "--log-format", "xml"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("[possible values: text, json]"), "{stderr}");
}

#[test]
fn json_log_lines_parse_with_their_fields() {
    let config = missing_uplink_config();
    let (code, stderr) = logged(
        &[
            "run",
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--config",
            &config,
        ],
        None,
    );
    assert_eq!(code, Some(1), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let start = events
        .iter()
        .find(|e| e["message"] == "starting")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["target"], "podfwd::cli");
    assert_eq!(start["config"], config.as_str());
    assert!(start["timestamp"].is_string(), "{start}");
    assert!(events.iter().any(|e| e["level"] == "DEBUG"), "{stderr}");
    assert_eq!(stderr.lines().last(), Some(MISSING_UPLINK));
}

#[test]
fn under_the_journal_lines_carry_a_syslog_priority_and_no_timestamp() {
    use std::os::unix::fs::MetadataExt;
    let config = missing_uplink_config();
    // stderr to a file whose device and inode JOURNAL_STREAM names, as systemd does.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal-stderr.log");
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_podfwd"))
        .args(["run", "--config", &config])
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let stderr = std::fs::read_to_string(&path).unwrap();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("<6> INFO podfwd::cli: starting")
                || l.starts_with("<6>INFO podfwd::cli: starting")),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().last(),
        Some(format!("<3>{MISSING_UPLINK}").as_str())
    );
    // Another stream's JOURNAL_STREAM (stderr is not the journal): plain lines.
    let (_, plain) = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podfwd"));
        cmd.args(["run", "--config", &config])
            .env_remove("RUST_LOG")
            .env("JOURNAL_STREAM", "1:1");
        let out = cmd.output().unwrap();
        (out.status.code(), text(&out.stderr))
    };
    assert!(plain.starts_with("20"), "{plain}");
}
