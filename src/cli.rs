//! The `podfwd` command line: `run`, `check`, `lab`, `stats`, `routes`, `trace` and `cleanup`, and
//! `completions` and `man`, generated from the same clap definition.
//!
//! [`main`] parses the arguments, sets up the daemon's logs from the global `--log-level`
//! and `--log-format` ([`crate::log`]), dispatches to one function per subcommand and turns any
//! error into `podfwd: error: <message>` on stderr and exit status 1 (usage errors exit 2,
//! as clap does). The work is elsewhere: `run` in [`crate::control`], `lab` in
//! [`crate::lab`], `stats` and `routes` ask a running instance's control socket.

use crate::config::{Backend, Config, ConfigError, Mode};
use crate::kernel::KernelSpec;
use crate::plan::{Plan, PlanError};
use clap::{Args, CommandFactory, Parser, Subcommand};
use ipnet::Ipv4Net;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Userspace node data plane for Kubernetes pod networks: forwards pod traffic between
/// nodes like flannel's host-gw and VXLAN backends, over AF_XDP or TUN.
#[derive(Debug, Parser)]
#[command(
    name = "podfwd",
    version = crate::build_info::SHORT_VERSION,
    long_version = crate::build_info::LONG_VERSION,
    propagate_version = true
)]
#[command(after_help = "Examples:\n  \
    podfwd check --config /etc/podfwd/podfwd.toml\n  \
    podfwd run --config /etc/podfwd/podfwd.toml --stats-interval 5\n  \
    podfwd lab --mode auto --backend tun\n  \
    podfwd stats --json\n  \
    podfwd routes\n  \
    podfwd cleanup --config /etc/podfwd/podfwd.toml")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The most verbose log level written to stderr (the daemon's diagnostics); wins
    /// over RUST_LOG, which may carry per-module directives (default: info). See
    /// docs/logging.md.
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    log_level: Option<crate::log::LogLevel>,
    /// How log lines look: text, or one JSON object per line.
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = crate::log::LogFormat::Text)]
    log_format: crate::log::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the forwarder in the foreground until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Validate a config file and print the resolved plan (exit 1 with a message if invalid).
    Check(CheckArgs),
    /// Start an embedded two-node demo cluster in network namespaces.
    Lab(LabArgs),
    /// Print the counters of a running instance, read from its control socket.
    Stats(StatsArgs),
    /// Print the live FIB of a running instance: prefix, next hop, mode, source, since.
    Routes(StatsArgs),
    /// Copy frames at a running instance's verdict point, with the drop reason: one line
    /// per frame, or a pcapng capture (no root needed, only the control socket).
    Trace(TraceArgs),
    /// Remove what podfwd installed in the kernel (its VXLAN device and routes); needs root.
    Cleanup(CleanupArgs),
    /// Print a shell completion script to stdout (e.g. `podfwd completions bash`).
    Completions(CompletionsArgs),
    /// Print the podfwd(8) manual page (roff) to stdout (`podfwd man | man -l -`).
    Man,
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The node's config file (TOML; see podfwd.example.toml).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Print counters to stderr every SECS seconds while running (default: never).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    stats_interval: Option<u64>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The node's config file (TOML; see podfwd.example.toml).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct CleanupArgs {
    /// The node's config file (TOML; see podfwd.example.toml).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct LabArgs {
    /// How the demo nodes reach each other's pods.
    #[arg(long, value_enum, default_value_t = Mode::Vxlan)]
    mode: Mode,
    /// How podfwd moves packets.
    #[arg(long, value_enum, default_value_t = Backend::AfXdp)]
    backend: Backend,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// The running instance's control socket ([control].socket in its config).
    #[arg(long, value_name = "PATH", default_value = "/run/podfwd/podfwd.sock")]
    socket: PathBuf,
}

#[derive(Debug, Args)]
struct TraceArgs {
    /// Only frames the data path dropped.
    #[arg(long)]
    drops: bool,
    /// Stop after N frames (default: until Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Write a pcapng capture to FILE (`-` for stdout) instead of printing lines; the
    /// verdict is each packet's comment.
    #[arg(long, value_name = "FILE.pcapng")]
    write: Option<PathBuf>,
    /// The running instance's control socket ([control].socket in its config).
    #[arg(long, value_name = "PATH", default_value = "/run/podfwd/podfwd.sock")]
    socket: PathBuf,
}

/// Why a subcommand failed. Printed as `podfwd: error: <message>`, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("uplink {uplink:?} (node.uplink) does not exist on this machine")]
    UplinkNotFound { uplink: String },
    #[error(
        "node.ip {ip} is not assigned to the uplink {uplink:?} (its IPv4 addresses: {})",
        if addresses.is_empty() { "none".to_string() } else {
            addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        }
    )]
    NodeIpNotOnUplink {
        ip: Ipv4Addr,
        uplink: String,
        addresses: Vec<Ipv4Net>,
    },
    #[error("cannot read the addresses of uplink {uplink:?}: {error}")]
    UplinkLookup { uplink: String, error: io::Error },
    #[error("{0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("{error}: podfwd cleanup needs root (CAP_NET_ADMIN) to change the kernel's network configuration")]
    NotPermitted { error: crate::kernel::KernelError },
    /// Errors of the data plane.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Entry point of the `podfwd` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::log::init(cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run_command(args),
        Command::Check(args) => check_command(args),
        Command::Lab(args) => lab(args.mode, args.backend),
        Command::Stats(args) => stats(args.json, args.socket),
        Command::Routes(args) => routes(args.json, args.socket),
        Command::Trace(args) => trace_command(args),
        Command::Cleanup(args) => cleanup_command(args),
        Command::Completions(args) => completions(args.shell, &mut io::stdout().lock()),
        Command::Man => man_page(&mut io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Under systemd the journal reads the syslog priority in front (err).
            let priority = if crate::log::stderr_is_journal() {
                "<3>"
            } else {
                ""
            };
            eprintln!("{priority}podfwd: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `podfwd completions SHELL`: the completion script for the whole command line.
fn completions(shell: clap_complete::Shell, out: &mut dyn io::Write) -> Result<(), CliError> {
    // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "podfwd", &mut script);
    write_output(out, &script)
}

/// `podfwd man`: the podfwd(8) manual page: the top-level page clap_mangen renders, then
/// one subsection per subcommand with its usage and options, so one page covers all.
fn man_page(out: &mut dyn io::Write) -> Result<(), CliError> {
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("8")
        .source(format!("podfwd {}", crate::build_info::VERSION))
        .manual("System Manager's Manual")
        .render(&mut page)
        .map_err(|e| CliError::Other(Box::new(e)))?;
    let mut text = String::from_utf8_lossy(&page).into_owned();
    // clap_mangen points at one page per subcommand (podfwd-run(8)); this page holds them.
    let names = cmd.get_subcommands().map(|s| s.get_name()).chain(["help"]);
    for name in names {
        text = text.replace(
            &format!("podfwd\\-{}(8)", roff_escape(name)),
            &format!("\\fBpodfwd {}\\fR", roff_escape(name)),
        );
    }
    text.push_str(".SH \"SUBCOMMAND OPTIONS\"\n");
    for sub in cmd.get_subcommands() {
        let mut sub = sub.clone().bin_name(format!("podfwd {}", sub.get_name()));
        text.push_str(&format!(".SS \"podfwd {}\"\n", roff_escape(sub.get_name())));
        if let Some(about) = sub.get_about() {
            text.push_str(&format!("{}\n.PP\n", roff_escape(&about.to_string())));
        }
        let usage = sub.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ");
        text.push_str(&format!("\\fB{}\\fR\n", roff_escape(usage)));
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let mut names = Vec::new();
            if let Some(s) = arg.get_short() {
                names.push(format!("-{s}"));
            }
            if let Some(l) = arg.get_long() {
                names.push(format!("--{l}"));
            }
            let takes_values = arg.get_action().takes_values();
            let values = arg
                .get_value_names()
                .filter(|_| takes_values)
                .map(|v| {
                    v.iter()
                        .map(|n| format!("<{n}>"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let head = match (names.is_empty(), values.is_empty()) {
                (true, _) => values,
                (false, true) => names.join(", "),
                (false, false) => format!("{} {values}", names.join(", ")),
            };
            text.push_str(&format!(".TP\n\\fB{}\\fR\n", roff_escape(&head)));
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|_| takes_values)
                .map(|v| v.get_name().to_string())
                .collect();
            if !possible.is_empty() {
                help.push_str(&format!(" [possible values: {}]", possible.join(", ")));
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .filter(|_| takes_values)
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                help.push_str(&format!(" [default: {}]", defaults.join(", ")));
            }
            text.push_str(&format!("{}\n", roff_escape(help.trim())));
        }
    }
    write_output(out, text.as_bytes())
}

/// Text for a roff line: backslashes and hyphens escaped, no leading control character.
fn roff_escape(s: &str) -> String {
    let escaped = s.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Writes generated text to stdout; a reader that closed the pipe early (`| head`) is
/// not an error.
fn write_output(out: &mut dyn io::Write, bytes: &[u8]) -> Result<(), CliError> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(CliError::Other(Box::new(e))),
        _ => Ok(()),
    }
}

/// `podfwd check`: load, validate, resolve, print the plan.
fn check_command(args: CheckArgs) -> Result<(), CliError> {
    let config = match Config::load(&args.config) {
        Err(e) if needs_registry(&e) => {
            // An etcd node: what the file says; the rest comes from the registry.
            let node = crate::config::EtcdNode::load(&args.config)?;
            println!("{}: ok", args.config.display());
            print!("{}", node.summary());
            return Ok(());
        }
        other => other?,
    };
    let (plan, notes) = resolve_plan(&config, Strictness::Check)?;
    println!("{}: ok", args.config.display());
    print!("{plan}");
    print!("{}", kernel_section(&plan));
    if plan.dataplane.backend == Backend::Tun {
        println!(
            "  ip rule add pref {} lookup {}   # kept; the TUN device's routes go in table {}, ahead of main",
            crate::netlink::TUN_RULE_PRIORITY,
            crate::netlink::TUN_TABLE,
            crate::netlink::TUN_TABLE
        );
    }
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}

/// The `podfwd check` section of what `podfwd run` installs in the kernel, with the
/// VXLAN MTU read from the uplink when it exists on this machine.
fn kernel_section(plan: &Plan) -> String {
    let mut spec = KernelSpec::from_plan(plan);
    if let Ok(uplink) = crate::netlink::interface(&plan.node.uplink) {
        spec = spec.with_uplink_mtu(uplink.mtu);
    }
    let mut out = String::from("kernel (installed by podfwd run, kept when it stops):\n");
    for line in spec.to_string().lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `podfwd cleanup`: remove podfwd's device and routes from this namespace's kernel.
fn cleanup_command(args: CleanupArgs) -> Result<(), CliError> {
    let config = Config::load(&args.config)?;
    let report = crate::kernel::cleanup(&config.vxlan.device).map_err(|error| {
        if error.errno() == Some(libc::EPERM) {
            CliError::NotPermitted { error }
        } else {
            CliError::Kernel(error)
        }
    })?;
    print!("{report}");
    // The TUN backend's rule ahead of main (its table empties with the device).
    let (prio, table) = (crate::netlink::TUN_RULE_PRIORITY, crate::netlink::TUN_TABLE);
    match crate::netlink::delete_lookup_rule(prio, table) {
        Ok(true) => println!("removed rule {prio}: from all lookup {table}"),
        Ok(false) => {}
        Err(e) => eprintln!("podfwd: warning: removing rule {prio}: lookup {table}: {e}"),
    }
    Ok(())
}

/// `podfwd run`: load, validate and resolve, then hand over to the control plane; on
/// SIGHUP the file is read again the same way (and refused with `podfwd check`'s
/// message when invalid).
/// Whether `Config::load` refused the file because its peers come from the registry.
fn needs_registry(e: &crate::config::ConfigError) -> bool {
    e.problem() == Some(&crate::config::Problem::NeedsRegistry)
}

fn run_command(args: RunArgs) -> Result<(), CliError> {
    tracing::info!(
        version = crate::build_info::VERSION,
        revision = crate::build_info::REVISION,
        config = %args.config.display(),
        "starting"
    );
    let load = |path: &std::path::Path| -> Result<Plan, CliError> {
        tracing::debug!(config = %path.display(), "reading the config");
        let config = Config::load(path)?;
        let plan = resolve_plan(&config, Strictness::Run)?.0;
        tracing::debug!(
            peers = plan.peers.len(),
            routes = plan.routes.len(),
            mode = %plan.dataplane.mode,
            backend = %plan.dataplane.backend,
            "plan resolved"
        );
        Ok(plan)
    };
    let plan = match load(&args.config) {
        Err(CliError::Config(e)) if needs_registry(&e) => return run_etcd_node(args),
        other => other?,
    };
    let path = args.config.clone();
    // The messages name the file already (as `podfwd check` prints them).
    let source =
        crate::control::source::StaticFile::new(move || load(&path).map_err(|e| e.to_string()));
    run_with(&plan, Box::new(source), args.stats_interval)
}

/// `podfwd run` once the plan and its route source are known.
fn run_with(
    plan: &Plan,
    source: Box<dyn crate::control::source::RouteSource>,
    stats_interval: Option<u64>,
) -> Result<(), CliError> {
    crate::control::run(plan, source, stats_interval.map(Duration::from_secs))
        .map_err(|e| CliError::Other(Box::new(e)))
}

/// `podfwd run` of an etcd node: its subnet and peers from flannel's registry.
fn run_etcd_node(args: RunArgs) -> Result<(), CliError> {
    let resolve: crate::control::etcd::Resolve = Box::new(|config: &Config| {
        resolve_plan(config, Strictness::Run)
            .map(|(plan, _)| plan)
            .map_err(|e| e.to_string())
    });
    let (plan, source) = crate::control::etcd::start(&args.config, resolve)
        .map_err(|why| CliError::Other(why.into()))?;
    run_with(&plan, Box::new(source), args.stats_interval)
}

/// Runs the data plane in the foreground until SIGINT or SIGTERM, with the routes of
/// `plan` (no file to reload). `stats_interval`: print counters that often to stderr
/// (`None`: never).
pub fn run(plan: Plan, stats_interval: Option<Duration>) -> Result<(), CliError> {
    crate::control::run(
        &plan,
        Box::new(crate::control::source::Fixed),
        stats_interval,
    )
    .map_err(|e| CliError::Other(Box::new(e)))
}

/// `podfwd lab`: the embedded demo cluster.
pub fn lab(mode: Mode, backend: Backend) -> Result<(), CliError> {
    crate::lab::run_demo(mode, backend).map_err(|e| CliError::Other(Box::new(e)))
}

/// `podfwd stats`: counters of a running instance.
pub fn stats(json: bool, socket: PathBuf) -> Result<(), CliError> {
    let reply = crate::control::query_stats(&socket).map_err(|e| CliError::Other(Box::new(e)))?;
    print_reply(&reply, json, reply.to_text())
}

/// A control socket reply as pretty JSON (`--json`) or as its text table.
fn print_reply(reply: &impl serde::Serialize, json: bool, text: String) -> Result<(), CliError> {
    if json {
        let body = serde_json::to_string_pretty(reply).map_err(|e| CliError::Other(Box::new(e)))?;
        println!("{body}");
    } else {
        print!("{text}");
    }
    Ok(())
}

/// `podfwd routes`: the live FIB of a running instance.
pub fn routes(json: bool, socket: PathBuf) -> Result<(), CliError> {
    let reply = crate::control::query_routes(&socket).map_err(|e| CliError::Other(Box::new(e)))?;
    print_reply(&reply, json, reply.to_text())
}

/// `podfwd trace`: frames of a running instance at the verdict point.
fn trace_command(args: TraceArgs) -> Result<(), CliError> {
    let opts = crate::trace::client::TraceOptions {
        drops_only: args.drops,
        count: args.count,
        write: args.write,
    };
    crate::trace::client::run(&args.socket, &opts)
        .map(|_| ())
        .map_err(|e| CliError::Other(Box::new(e)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// The uplink may live on another machine: say so and carry on.
    Check,
    /// The uplink must exist and carry node.ip.
    Run,
}

/// Resolves the plan, reading the uplink's subnet from the kernel when `node.ip` has no
/// prefix length. Returns notes for the user about what could not be checked.
fn resolve_plan(config: &Config, strictness: Strictness) -> Result<(Plan, Vec<String>), CliError> {
    let node = &config.node;
    let mut notes = Vec::new();
    let mut kernel_subnet = None;
    if node.subnet.is_none() {
        let uplink = node.uplink.clone();
        match read_uplink_subnet(&node.uplink, node.ip) {
            Ok(UplinkSubnet::Found(net)) => kernel_subnet = Some(net),
            Ok(UplinkSubnet::InterfaceNotFound) if strictness == Strictness::Check => {
                notes.push(format!(
                    "uplink {uplink:?} was not found on this machine, so its subnet is unknown; \
                     give node.ip with a prefix length to check which peers are on-link"
                ));
            }
            Ok(UplinkSubnet::InterfaceNotFound) => return Err(CliError::UplinkNotFound { uplink }),
            Ok(UplinkSubnet::AddressNotAssigned { addresses }) => {
                let err = CliError::NodeIpNotOnUplink {
                    ip: node.ip,
                    uplink,
                    addresses,
                };
                if strictness == Strictness::Run {
                    return Err(err);
                }
                notes.push(format!("{err}; the uplink subnet is unknown"));
            }
            Err(error) => {
                let err = CliError::UplinkLookup { uplink, error };
                if strictness == Strictness::Run {
                    return Err(err);
                }
                notes.push(err.to_string());
            }
        }
    }
    let plan = Plan::resolve(config, kernel_subnet)?;
    Ok((plan, notes))
}

/// What the kernel says about the uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkSubnet {
    /// The subnet of the uplink address equal to `node.ip`.
    Found(Ipv4Net),
    /// No interface of that name in this network namespace.
    InterfaceNotFound,
    /// The interface exists but does not carry `node.ip`; these are its IPv4 addresses.
    AddressNotAssigned { addresses: Vec<Ipv4Net> },
}

/// Reads the subnet of `node_ip` on interface `uplink` from the kernel (the one
/// interface lookup, [`crate::netlink::interface`]).
pub fn read_uplink_subnet(uplink: &str, node_ip: Ipv4Addr) -> io::Result<UplinkSubnet> {
    use crate::netlink::NetlinkError;
    let addresses = match crate::netlink::interface(uplink) {
        Ok(i) => i.ipv4,
        Err(NetlinkError::NoSuchInterface(_) | NetlinkError::InvalidInterfaceName(_)) => {
            return Ok(UplinkSubnet::InterfaceNotFound)
        }
        Err(e) => return Err(io::Error::other(e)),
    };
    Ok(match addresses.iter().find(|a| a.addr() == node_ip) {
        Some(a) => UplinkSubnet::Found(a.trunc()),
        None => UplinkSubnet::AddressNotAssigned { addresses },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_argument_has_help_text() {
        for sub in Cli::command().get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} --{} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn loopback_subnet_is_read_from_the_kernel() {
        // Every network namespace has lo with 127.0.0.1/8 once it is up; skip if not.
        match read_uplink_subnet("lo", Ipv4Addr::LOCALHOST).unwrap() {
            UplinkSubnet::Found(net) => assert!(net.contains(&Ipv4Addr::LOCALHOST)),
            other => eprintln!("lo has no 127.0.0.1 here: {other:?}"),
        }
    }

    #[test]
    fn missing_uplink_is_reported_as_not_found() {
        assert_eq!(
            read_uplink_subnet("podfwd-nx0", Ipv4Addr::new(10, 168, 0, 2)).unwrap(),
            UplinkSubnet::InterfaceNotFound
        );
    }

    #[test]
    fn check_without_the_uplink_notes_it_instead_of_failing() {
        let config = Config::from_toml_str(
            "[node]\nip = \"10.168.0.2\"\npod_cidr = \"10.244.0.0/24\"\nuplink = \"podfwd-nx0\"\n\
             pod_interfaces = [\"podfwd-nx1\"]\n[vxlan]\nvtep_mac = \"0e:00:00:00:00:0a\"\n",
        )
        .unwrap();
        let (plan, notes) = resolve_plan(&config, Strictness::Check).unwrap();
        assert!(plan.node.subnet.is_none());
        assert!(notes[0].contains("not found on this machine"), "{notes:?}");
        let err = resolve_plan(&config, Strictness::Run).unwrap_err();
        assert!(matches!(err, CliError::UplinkNotFound { .. }), "{err}");
    }
}
