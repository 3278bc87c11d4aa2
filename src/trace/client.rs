//! The `podfwd trace` command: connects to a running instance's control socket, sends
//! the request, and prints one line per frame ([`super::print`]) or writes a pcapng
//! capture ([`super::pcapng`]), until `--count` frames, Ctrl-C (SIGINT/SIGTERM), or the
//! instance closes the stream. Needs no root, only access to the socket.

use super::pcapng::PcapngSink;
use super::print;
use super::protocol::{ProtocolError, Record, RecordReader, TraceRequest};
use std::io::{self, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What `podfwd trace` was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceOptions {
    /// Only dropped frames.
    pub drops_only: bool,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Write a pcapng capture here (`-`: stdout) instead of printing lines.
    pub write: Option<PathBuf>,
}

/// How a trace went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Frames received.
    pub frames: u64,
    /// Frames the instance could not copy to us (its rings or our queue were full).
    pub missed: u64,
}

/// Why `podfwd trace` failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceClientError {
    #[error("control socket {path}: no podfwd is running there ({source})")]
    NotRunning { path: PathBuf, source: io::Error },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control socket {path}: {source}")]
    Protocol {
        path: PathBuf,
        source: ProtocolError,
    },
    #[error("control socket {path}: the instance refused the trace: {message}")]
    Refused { path: PathBuf, message: String },
    #[error("capture file {path}: {source}")]
    Capture {
        path: PathBuf,
        source: pcap_file::PcapError,
    },
    #[error("cannot write the trace to stdout: {source}")]
    Output { source: io::Error },
    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(io::Error),
}

/// `podfwd trace`: streams until done; Ctrl-C ends it cleanly (exit status 0). Lines go
/// to stdout, the summary to stderr.
pub fn run(socket: &Path, opts: &TraceOptions) -> Result<Summary, TraceClientError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(TraceClientError::Signal)?;
    }
    let summary = run_with(socket, opts, &mut io::stdout().lock(), &stop)?;
    eprintln!(
        "podfwd trace: {} frames, {} missed",
        summary.frames, summary.missed
    );
    Ok(summary)
}

/// Where frames go.
enum Sink<'a> {
    Text(&'a mut dyn Write),
    Pcapng(PcapngSink<Box<dyn Write + 'a>>, PathBuf),
}

/// [`run`] with the text output and the stop flag given (for tests): lines to `out`
/// unless `opts.write` names a capture file.
pub fn run_with(
    socket: &Path,
    opts: &TraceOptions,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<Summary, TraceClientError> {
    let path = socket.to_path_buf();
    let io_err = |source| TraceClientError::Io {
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(socket).map_err(|source| TraceClientError::NotRunning {
        path: path.clone(),
        source,
    })?;
    // Short read timeouts so the stop flag is seen; the server's heartbeat comes every
    // 250 ms anyway.
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(io_err)?;
    let req = TraceRequest {
        drops_only: opts.drops_only,
        count: opts.count,
    };
    (&stream)
        .write_all(req.to_line().as_bytes())
        .map_err(io_err)?;
    let mut reader = RecordReader::new(&stream);
    let protocol = |source| TraceClientError::Protocol {
        path: path.clone(),
        source,
    };

    let mut sink: Option<Sink<'_>> = None;
    let mut ports = Vec::new();
    let mut summary = Summary::default();
    // Missed frames not yet attached to a packet of the capture.
    let mut missed_pending = 0u64;
    let capture_err = |p: &Path, source| TraceClientError::Capture {
        path: p.to_path_buf(),
        source,
    };
    let mut text_out = Some(out);
    loop {
        if stop.load(Ordering::Relaxed) || opts.count.is_some_and(|n| summary.frames >= n) {
            break;
        }
        let rec = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(ProtocolError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(protocol(e)),
        };
        match rec {
            Record::Hello {
                snap_len,
                ports: names,
                ..
            } => {
                ports = names;
                sink = Some(match &opts.write {
                    Some(p) => {
                        let w: Box<dyn Write> = if p.as_os_str() == "-" {
                            Box::new(BufWriter::new(io::stdout()))
                        } else {
                            let f = std::fs::File::create(p).map_err(|source| {
                                capture_err(p, pcap_file::PcapError::IoError(source))
                            })?;
                            Box::new(BufWriter::new(f))
                        };
                        let s =
                            PcapngSink::new(w, &ports, snap_len).map_err(|e| capture_err(p, e))?;
                        Sink::Pcapng(s, p.clone())
                    }
                    None => Sink::Text(text_out.take().expect("one hello per stream")),
                });
            }
            Record::Frame(f) => {
                summary.frames += 1;
                match sink.as_mut() {
                    Some(Sink::Text(w)) => match writeln!(w, "{}", print::line(&f, &ports)) {
                        Ok(()) => {}
                        // The reader left (`| head`): done, not an error.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(summary),
                        Err(source) => return Err(TraceClientError::Output { source }),
                    },
                    Some(Sink::Pcapng(s, p)) => {
                        s.write_frame(&f, missed_pending)
                            .map_err(|e| capture_err(p, e))?;
                        missed_pending = 0;
                    }
                    None => unreachable!("the reader checks the hello comes first"),
                }
            }
            Record::Missed(total) => {
                if total > summary.missed {
                    missed_pending += total - summary.missed;
                    summary.missed = total;
                }
                // Keep the file usable if we are killed: flush at every heartbeat.
                match sink.as_mut() {
                    Some(Sink::Pcapng(s, p)) => s
                        .flush()
                        .map_err(|e| capture_err(p, pcap_file::PcapError::IoError(e)))?,
                    Some(Sink::Text(w)) => flush_text(w)?,
                    None => {}
                }
            }
            Record::Error(message) => return Err(TraceClientError::Refused { path, message }),
        }
    }
    match sink {
        Some(Sink::Pcapng(mut s, p)) => s
            .flush()
            .map_err(|e| capture_err(&p, pcap_file::PcapError::IoError(e)))?,
        Some(Sink::Text(w)) => flush_text(w)?,
        None => {}
    }
    Ok(summary)
}

/// Flushes the text output; a reader that left is not an error.
fn flush_text(w: &mut dyn Write) -> Result<(), TraceClientError> {
    match w.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(TraceClientError::Output { source: e })
        }
        _ => Ok(()),
    }
}
