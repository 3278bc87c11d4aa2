//! Compiles the bench's reference forwarders (`bpf/xdp_limit.bpf.c`: `xdp_limit` and
//! `xsk_limit`, see limit.rs) with clang into `OUT_DIR`, as podfwd's build.rs does for its
//! classifier. Needs clang and the libbpf headers (`tools/setup.sh`); `CLANG` overrides
//! the compiler.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

const SRC: &str = "bpf/xdp_limit.bpf.c";
const OBJ: &str = "xdp_limit.bpf.o";

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={SRC}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    // The BPF target's byte order must be the one the loading machine runs.
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-target", target])
        .args(["-Wall", "-Wextra", "-Werror"]);
    // <linux/types.h> includes <asm/types.h>, which Debian keeps under the multiarch
    // directory; -target bpf does not search it.
    if let Some(dir) = multiarch_include(&env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default()) {
        cmd.arg("-idirafter").arg(dir);
    }
    cmd.args(["-c", SRC, "-o"]).arg(out_dir.join(OBJ));
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "error: cannot run `{clang}` to compile {SRC}: {e} (install clang and \
                 libbpf-dev, e.g. `sudo tools/setup.sh`, or set CLANG)"
            );
            exit(1);
        }
    };
    if !output.status.success() {
        eprintln!(
            "error: `{clang}` failed to compile {SRC} ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        exit(1);
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
