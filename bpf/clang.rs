// How podfwd's BPF objects are compiled: `include!`d by build.rs (bpf/) and by
// tools/bench/build.rs (tools/bench/bpf/), so both build them the same way. Each build
// script reports a failing clang in its own words.

/// `clang` set up to compile the BPF program `src` into `obj`: `-O2 -g` for the BPF
/// target of this machine's byte order, warnings as errors, the crate's own `bpf/` on
/// the include path.
fn bpf_clang(clang: &str, src: &str, obj: &std::path::Path) -> std::process::Command {
    // The BPF target's byte order must be the one the loading machine runs.
    let target = match std::env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    let mut cmd = std::process::Command::new(clang);
    cmd.args(["-O2", "-g", "-target", target])
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg("-Ibpf");
    // <linux/types.h> includes <asm/types.h>, which Debian keeps under the multiarch
    // directory; -target bpf does not search it (gcc-multilib would add a symlink).
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if let Some(dir) = multiarch_include(&arch) {
        cmd.arg("-idirafter").arg(dir);
    }
    cmd.args(["-c", src, "-o"]).arg(obj);
    cmd
}

/// Debian's multiarch include directory for `arch`, if it holds `asm/`.
fn multiarch_include(arch: &str) -> Option<std::path::PathBuf> {
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
    let dir = std::path::Path::new("/usr/include").join(triple);
    dir.join("asm").is_dir().then_some(dir)
}
