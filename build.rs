//! Compiles the XDP classifier (`bpf/podfwd_xdp.bpf.c`) with clang into `OUT_DIR`;
//! `src/xdp.rs` embeds the object with `include_bytes!`. Also compiles the two small test
//! fixtures under `bpf/testdata/` (a program the verifier rejects, a "foreign" program).
//!
//! Needs clang (Debian package `clang`) and the libbpf headers (Debian package
//! `libbpf-dev`); `tools/setup.sh` installs both. `CLANG` overrides the compiler. The
//! clang command line is `bpf/clang.rs`, shared with tools/bench/build.rs.
//!
//! Also sets what `podfwd --version` and the metrics' `podfwd_build_info` report:
//! `PODFWD_GIT_REVISION` (see [`git_revision`]) and `PODFWD_FEATURES` (the enabled cargo
//! features, comma-separated, or `none`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

include!("bpf/clang.rs");

/// (source, object file name in OUT_DIR)
const PROGRAMS: &[(&str, &str)] = &[
    ("bpf/podfwd_xdp.bpf.c", "podfwd_xdp.bpf.o"),
    (
        "bpf/testdata/reject_unchecked.bpf.c",
        "reject_unchecked.bpf.o",
    ),
    ("bpf/testdata/foreign_pass.bpf.c", "foreign_pass.bpf.o"),
];
const HEADERS: &[&str] = &["bpf/podfwd_xdp.h"];

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    for (src, _) in PROGRAMS {
        println!("cargo:rerun-if-changed={src}");
    }
    for h in HEADERS {
        println!("cargo:rerun-if-changed={h}");
    }

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!(
        "cargo:rustc-env=PODFWD_GIT_REVISION={}",
        git_revision(&manifest_dir)
    );
    println!("cargo:rustc-env=PODFWD_FEATURES={}", features());
    println!(
        "cargo:rustc-env=PODFWD_TARGET={}",
        env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=PODFWD_PROFILE={}",
        env::var("PROFILE").unwrap_or_default()
    );

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    for (src, obj) in PROGRAMS {
        compile(&clang, src, &out_dir.join(obj));
    }
}

/// The enabled cargo features (`CARGO_FEATURE_<NAME>`), lower-case, sorted, or `none`.
fn features() -> String {
    let mut names: Vec<String> = env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_lowercase().replace('_', "-"))
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(",")
    }
}

/// `git rev-parse --short HEAD`, with `-dirty` when tracked files differ from HEAD;
/// `PODFWD_REVISION` overrides it (a container build without `.git`); `unknown` when
/// this is not a git checkout of podfwd itself (a tarball, or sources vendored inside
/// another repository).
///
/// Reruns only when HEAD moves (HEAD, the branch ref it names, packed-refs), the index
/// changes (staging, commits) or the sources that make the binaries change: not on
/// every build. So a build right after editing a file outside those (docs/) keeps the
/// earlier clean/dirty flag until the next rebuild, which is what the flag is about.
fn git_revision(manifest_dir: &Path) -> String {
    println!("cargo:rerun-if-env-changed=PODFWD_REVISION");
    if let Ok(rev) = env::var("PODFWD_REVISION") {
        if !rev.trim().is_empty() {
            return rev.trim().to_string();
        }
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Only our own repository: an enclosing repository's HEAD says nothing about podfwd.
    let Some(top) = git(&["rev-parse", "--show-toplevel"]) else {
        return "unknown".to_string();
    };
    let same_dir = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same_dir(Path::new(&top), manifest_dir) {
        return "unknown".to_string();
    }
    // The files whose change moves HEAD or the index. A path that does not exist is left
    // out: cargo would rerun the script on every build for it.
    let mut watch = vec![
        "HEAD".to_string(),
        "packed-refs".to_string(),
        "index".to_string(),
    ];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = manifest_dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    for src in [
        "src",
        "bpf",
        "tools/bench",
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
    ] {
        if manifest_dir.join(src).exists() {
            println!("cargo:rerun-if-changed={src}");
        }
    }
    let Some(rev) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_string();
    };
    // --untracked-files=no: a stray scratch file is not a change to what was built.
    // --no-optional-locks: do not refresh (rewrite) the index, which would rerun us.
    let dirty = git(&[
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{rev}-dirty")
    } else {
        rev
    }
}

fn compile(clang: &str, src: &str, obj: &Path) {
    let output = match bpf_clang(clang, src, obj).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "error: cannot compile {src}: `{clang}` not found.\n\
                 podfwd builds its XDP program with clang: install the Debian package `clang` \
                 (and `libbpf-dev` for <bpf/bpf_helpers.h>), e.g. `sudo tools/setup.sh`, \
                 or point the CLANG environment variable at a clang binary."
            );
            exit(1);
        }
        Err(e) => {
            eprintln!("error: cannot run `{clang}` to compile {src}: {e}");
            exit(1);
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "error: `{clang}` failed to compile {src} ({}):\n{stderr}",
            output.status
        );
        if stderr.contains("bpf/bpf_helpers.h") || stderr.contains("bpf/bpf_endian.h") {
            eprintln!(
                "hint: the libbpf headers are missing: install the Debian package `libbpf-dev`"
            );
        }
        if stderr.contains("asm/types.h") || stderr.contains("linux/bpf.h") {
            eprintln!(
                "hint: the kernel headers are missing: install the Debian package `linux-libc-dev`"
            );
        }
        exit(1);
    }
}
