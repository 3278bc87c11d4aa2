//! The daemon's own diagnostics: leveled, structured events (the `tracing` crate), one
//! line each on stderr, where systemd's journal or the container runtime collects them.
//! See docs/logging.md.
//!
//! [`init`] sets up the subscriber once, in `main`. Which events are written: an explicit
//! `--log-level` wins, then `RUST_LOG` (with per-module directives such as
//! `podfwd::control=debug,h2=info`), then `info`. A level given as `--log-level` (or the
//! default) applies to podfwd's own modules; the libraries podfwd links (the etcd client's
//! gRPC stack) stay at `warn` unless `RUST_LOG` names them.
//!
//! Nothing logs per packet: the workers log when they start, stop or fail, and the
//! control plane logs what changed. A warning that can repeat every turn of a loop (a
//! neighbour that does not resolve, an etcd that does not answer) goes through a
//! [`RateLimit`]: the first occurrence is written, then at most one per interval and key,
//! carrying `suppressed=N` for the ones left out in between ([`warn_limited!`]).
//!
//! What user-facing commands print (`podfwd check`'s plan, `podfwd stats`, the lab's
//! narration, the `--stats-interval` line, `podfwd: error: ...` at exit) is their output,
//! not a log, and stays plain text.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::{self, Write};
use std::time::{Duration, Instant};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::{FmtSpan, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// `--log-level`: the most verbose level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// `--log-format`: how each event's line looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-01-01T12:00:00.000000Z  WARN podfwd::control: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, message and the fields.
    Json,
}

/// The level when neither `--log-level` nor `RUST_LOG` says one.
pub const DEFAULT_LEVEL: LogLevel = LogLevel::Info;

/// The filter directives in force: `--log-level` over `RUST_LOG` over [`DEFAULT_LEVEL`].
/// An unusable `RUST_LOG` is ignored; the second value says why, to be logged once the
/// subscriber runs.
pub fn directives(level: Option<LogLevel>, rust_log: Option<&str>) -> (String, Option<String>) {
    let for_level = |l: LogLevel| {
        // The libraries' chatter (h2, tonic, rustls) stays out unless RUST_LOG asks.
        let others = l.min(LogLevel::Warn);
        format!("{},podfwd={}", others.name(), l.name())
    };
    if let Some(l) = level {
        return (for_level(l), None);
    }
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (for_level(DEFAULT_LEVEL), None),
        Some(s) => match EnvFilter::builder().parse(s) {
            Ok(_) => (s.to_string(), None),
            Err(e) => (
                for_level(DEFAULT_LEVEL),
                Some(format!("RUST_LOG={s:?} ignored: {e}")),
            ),
        },
    }
}

/// Whether stderr is connected to systemd's journal (`JOURNAL_STREAM` names its device
/// and inode, as systemd.exec(5) says to check): lines then carry a `<N>` syslog
/// priority prefix (journald's `SyslogLevelPrefix=`, on by default) and no timestamp
/// (the journal has its own).
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let stream = stream.to_string_lossy();
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 with a zeroed stat buffer it fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev == dev && st.st_ino == ino
}

type Subscriber = Layered<EnvFilter, Registry>;

/// Installs the process's subscriber: `level` (`--log-level`) or `RUST_LOG`, `format`,
/// to stderr. Call once, first thing in `main`; later calls do nothing.
pub fn init(level: Option<LogLevel>, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (directives, ignored) = directives(level, rust_log.as_deref());
    let filter = EnvFilter::builder()
        .parse(&directives)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = stderr_is_journal();
    let base = tracing_subscriber::fmt::layer()
        .with_writer(OneLine)
        .with_ansi(false)
        .with_span_events(FmtSpan::NONE);
    let layer: Box<dyn Layer<Subscriber> + Send + Sync> = match (format, journal) {
        (LogFormat::Text, false) => base.boxed(),
        (LogFormat::Text, true) => base
            .event_format(JournalPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .boxed(),
        (LogFormat::Json, false) => base.json().flatten_event(true).boxed(),
        (LogFormat::Json, true) => base
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(JournalPriority(
                tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .without_time(),
            ))
            .boxed(),
    };
    if Registry::default()
        .with(filter)
        .with(layer)
        .try_init()
        .is_ok()
    {
        if let Some(why) = ignored {
            tracing::warn!(default = DEFAULT_LEVEL.name(), "{why}");
        }
    }
}

/// Writes each event as one line: a newline inside a value (a multi-line error message)
/// becomes `\n`, so a journal or `grep` sees one event per line.
struct OneLine;

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLine;
    fn make_writer(&'a self) -> OneLine {
        OneLine
    }
}

impl Write for OneLine {
    /// The formatter hands over one whole event per call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut line = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            if b == b'\n' {
                line.extend_from_slice(b"\\n");
            } else {
                line.push(b);
            }
        }
        line.push(b'\n');
        io::stderr().lock().write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// An event format with the syslog priority in front (`<3>` error ... `<7>` debug), for
/// the journal.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog(3)'s priority of a level: err, warning, info, debug.
fn syslog_priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// Lets a repeated event through once per `every` and key: the first occurrence at
/// once, then the next one an interval after the last written, which reports how many
/// were held back in between. Occurrences that stop coming are not reported later
/// (the count waits for the next written one). Bounded: past [`RateLimit::MAX_KEYS`]
/// keys, those quiet for an interval are forgotten.
#[derive(Debug)]
pub struct RateLimit<K> {
    every: Duration,
    seen: HashMap<K, Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    last: Instant,
    suppressed: u64,
}

/// How often a rate-limited warning repeats per key, by default.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

impl<K: Hash + Eq> RateLimit<K> {
    /// The most keys remembered before quiet ones are forgotten.
    pub const MAX_KEYS: usize = 4096;

    pub fn new(every: Duration) -> RateLimit<K> {
        RateLimit {
            every,
            seen: HashMap::new(),
        }
    }

    /// Whether to write this occurrence of `key` now: `Some(n)`, with `n` occurrences
    /// suppressed since the last one written, or `None` to suppress it.
    pub fn allow(&mut self, key: K) -> Option<u64> {
        self.allow_at(key, Instant::now())
    }

    /// [`RateLimit::allow`] at time `now`.
    pub fn allow_at(&mut self, key: K, now: Instant) -> Option<u64> {
        if let Some(s) = self.seen.get_mut(&key) {
            if now.saturating_duration_since(s.last) < self.every {
                s.suppressed += 1;
                return None;
            }
            let n = s.suppressed;
            *s = Seen {
                last: now,
                suppressed: 0,
            };
            return Some(n);
        }
        if self.seen.len() >= Self::MAX_KEYS {
            let every = self.every;
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.last) < every);
        }
        self.seen.insert(
            key,
            Seen {
                last: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// `warn_limited!(limit, key, fields..., "message")`: `tracing::warn!` through the
/// [`RateLimit`] `limit`, with a `suppressed` field when occurrences were held back.
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $key:expr, $($rest:tt)+) => {
        if let Some(n) = $limit.allow($key) {
            ::tracing::warn!(suppressed = (n > 0).then_some(n), $($rest)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_passes_then_one_per_interval_with_the_count() {
        let mut limit = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow_at("a", t0), Some(0));
        for s in 1..10 {
            assert_eq!(limit.allow_at("a", t0 + Duration::from_secs(s)), None);
        }
        // Another key has its own interval.
        assert_eq!(limit.allow_at("b", t0 + Duration::from_secs(5)), Some(0));
        assert_eq!(limit.allow_at("a", t0 + Duration::from_secs(10)), Some(9));
        assert_eq!(limit.allow_at("a", t0 + Duration::from_secs(11)), None);
        assert_eq!(limit.allow_at("a", t0 + Duration::from_secs(20)), Some(1));
        // Quiet for long: written again at once, nothing held back.
        assert_eq!(limit.allow_at("a", t0 + Duration::from_secs(100)), Some(0));
    }

    #[test]
    fn quiet_keys_are_forgotten_past_the_bound() {
        let mut limit = RateLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for k in 0..RateLimit::<u32>::MAX_KEYS as u32 {
            assert_eq!(limit.allow_at(k, t0), Some(0));
        }
        let later = t0 + Duration::from_secs(2);
        assert_eq!(limit.allow_at(u32::MAX, later), Some(0));
        assert_eq!(limit.seen.len(), 1);
        // A live key survives the pruning.
        let mut limit = RateLimit::new(Duration::from_secs(10));
        for k in 0..RateLimit::<u32>::MAX_KEYS as u32 {
            limit.allow_at(k, t0);
        }
        limit.allow_at(u32::MAX, t0 + Duration::from_secs(1));
        assert_eq!(limit.seen.len(), RateLimit::<u32>::MAX_KEYS + 1);
        assert_eq!(limit.allow_at(7, t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn log_level_wins_over_rust_log_over_the_default() {
        let (d, _) = directives(Some(LogLevel::Warn), Some("debug"));
        assert_eq!(d, "warn,podfwd=warn");
        let (d, _) = directives(Some(LogLevel::Debug), None);
        assert_eq!(d, "warn,podfwd=debug");
        let (d, _) = directives(Some(LogLevel::Error), None);
        assert_eq!(d, "error,podfwd=error");
        let (d, _) = directives(None, Some("podfwd::control=debug,h2=info"));
        assert_eq!(d, "podfwd::control=debug,h2=info");
        let (d, why) = directives(None, None);
        assert_eq!((d.as_str(), why), ("warn,podfwd=info", None));
        let (d, why) = directives(None, Some("  "));
        assert_eq!((d.as_str(), why), ("warn,podfwd=info", None));
    }

    #[test]
    fn an_unusable_rust_log_falls_back_to_the_default_and_says_why() {
        let (d, why) = directives(None, Some("podfwd=loud"));
        assert_eq!(d, "warn,podfwd=info");
        assert!(why.unwrap().contains("RUST_LOG=\"podfwd=loud\" ignored"));
    }

    #[test]
    fn journal_priorities_follow_syslog() {
        assert_eq!(syslog_priority(tracing::Level::ERROR), 3);
        assert_eq!(syslog_priority(tracing::Level::WARN), 4);
        assert_eq!(syslog_priority(tracing::Level::INFO), 6);
        assert_eq!(syslog_priority(tracing::Level::DEBUG), 7);
        assert_eq!(syslog_priority(tracing::Level::TRACE), 7);
    }
}
