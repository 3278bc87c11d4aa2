//! Compiles the XDP classifier (`bpf/podfwd_xdp.bpf.c`) with clang into `OUT_DIR`;
//! `src/xdp.rs` embeds the object with `include_bytes!`. Also compiles the two small test
//! fixtures under `bpf/testdata/` (a program the verifier rejects, a "foreign" program).
//!
//! Needs clang (Debian package `clang`) and the libbpf headers (Debian package
//! `libbpf-dev`); `tools/setup.sh` installs both. `CLANG` overrides the compiler.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

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

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    // The BPF target's byte order must be the one the loading machine runs.
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    // <linux/types.h> includes <asm/types.h>, which Debian keeps under the multiarch
    // directory; -target bpf does not search it (gcc-multilib would add a symlink).
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = multiarch_include(&arch);

    for (src, obj) in PROGRAMS {
        compile(
            &clang,
            target,
            multiarch.as_deref(),
            src,
            &out_dir.join(obj),
        );
    }
}

fn multiarch_include(arch: &str) -> Option<PathBuf> {
    let triple = match arch {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "loongarch64" => "loongarch64-linux-gnu",
        _ => return None,
    };
    let dir = Path::new("/usr/include").join(triple);
    dir.join("asm").is_dir().then_some(dir)
}

fn compile(clang: &str, target: &str, multiarch: Option<&Path>, src: &str, obj: &Path) {
    let mut cmd = Command::new(clang);
    cmd.args(["-O2", "-g", "-target", target])
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg("-Ibpf");
    if let Some(dir) = multiarch {
        cmd.arg("-idirafter").arg(dir);
    }
    cmd.args(["-c", src, "-o"]).arg(obj);

    let output = match cmd.output() {
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
