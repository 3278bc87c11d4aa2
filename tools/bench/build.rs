//! Compiles the bench's reference forwarders (`bpf/xdp_limit.bpf.c`: `xdp_limit` and
//! `xsk_limit`, see limit.rs) with clang into `OUT_DIR`, as podfwd's build.rs does for its
//! classifier (the same flags: `bpf/clang.rs` at the top). Needs clang and the libbpf
//! headers (`tools/setup.sh`); `CLANG` overrides the compiler.

use std::env;
use std::path::PathBuf;
use std::process::exit;

include!("../../bpf/clang.rs");

const SRC: &str = "bpf/xdp_limit.bpf.c";
const OBJ: &str = "xdp_limit.bpf.o";

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={SRC}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let output = match bpf_clang(&clang, SRC, &out_dir.join(OBJ)).output() {
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
