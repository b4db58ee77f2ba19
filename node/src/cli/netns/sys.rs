//! The system tools `tally netns` drives (`ip`, `nft`, `tc`), run as child
//! processes with their errors turned into messages that say what failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Fails unless this process runs as root and `tool` is on the PATH.
pub fn require(tools: &[&str]) -> anyhow::Result<()> {
    if !is_root() {
        bail!("tally netns creates network namespaces: run it as root");
    }
    for tool in tools {
        if which(tool).is_none() {
            let package = match *tool {
                "ip" | "tc" => "iproute2",
                "nft" => "nftables",
                other => other,
            };
            bail!("`{tool}` is not installed (apt-get install {package})");
        }
    }
    Ok(())
}

/// Whether this process runs as root (the owner of /proc/self is the
/// effective user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The path of `tool` on the PATH (or in /usr/sbin, /sbin, which sudo and
/// cron leave off).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Runs `program args...`; fails with its stderr if it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    run_with_input(program, args, None)
}

/// As [`run`], feeding `input` on stdin (an `nft -f -` rule set).
pub fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let exe = which(program).with_context(|| format!("`{program}` is not installed"))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS` in the root namespace.
pub fn ip(args: &str) -> anyhow::Result<()> {
    run("ip", &args.split_whitespace().collect::<Vec<_>>()).map(drop)
}

/// `ip -n NS ARGS`: in namespace `ns`.
pub fn ip_in(ns: &str, args: &str) -> anyhow::Result<()> {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    run("ip", &all).map(drop)
}

/// Runs `program args` inside namespace `ns`.
pub fn exec_in(ns: &str, program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<()> {
    let exe = which(program).with_context(|| format!("`{program}` is not installed"))?;
    let exe = exe.to_string_lossy();
    let mut all = vec!["netns", "exec", ns, &exe];
    all.extend(args);
    run_with_input("ip", &all, input).map(drop)
}

/// Loads an nftables rule set inside namespace `ns`.
pub fn nft_in(ns: &str, rules: &str) -> anyhow::Result<()> {
    exec_in(ns, "nft", &["-f", "-"], Some(rules))
}

/// The network namespaces that exist.
pub fn namespaces() -> anyhow::Result<Vec<String>> {
    let out = run("ip", &["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The processes whose network namespace is `ns`.
pub fn pids_in(ns: &str) -> Vec<i32> {
    run("ip", &["netns", "pids", ns])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether a link of that name exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Where libfaketime is, if installed (Debian's `faketime` package).
pub fn libfaketime() -> Option<PathBuf> {
    let mut candidates = vec![
        PathBuf::from("/usr/lib/faketime/libfaketime.so.1"),
        PathBuf::from("/usr/local/lib/faketime/libfaketime.so.1"),
    ];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        for dir in dirs.flatten() {
            candidates.push(dir.path().join("faketime/libfaketime.so.1"));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}
