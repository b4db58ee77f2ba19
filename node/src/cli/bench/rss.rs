//! The peak resident memory of the `tally` node processes on this machine
//! during a run, sampled from /proc every 500 ms (Linux; elsewhere it
//! reports nothing).

use std::collections::BTreeMap;
use std::time::Duration;

/// Samples until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<BTreeMap<u32, f64>>,
}

/// Resident memory (MiB) of every process named `tally` but this one.
fn sample() -> BTreeMap<u32, f64> {
    let me = std::process::id();
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let is_tally = std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|comm| comm.trim() == "tally");
        if !is_tally {
            continue;
        }
        if let Some(kib) = std::fs::read_to_string(entry.path().join("status"))
            .ok()
            .and_then(|status| vm_rss_kib(&status))
        {
            out.insert(pid, kib as f64 / 1024.0);
        }
    }
    out
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Sampler {
    pub fn start() -> Sampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peaks: BTreeMap<u32, f64> = BTreeMap::new();
            loop {
                let now = tokio::task::spawn_blocking(sample)
                    .await
                    .unwrap_or_default();
                for (pid, mib) in now {
                    let peak = peaks.entry(pid).or_default();
                    *peak = peak.max(mib);
                }
                tokio::select! {
                    _ = &mut stopped => return peaks,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
        Sampler { stop, task }
    }

    /// The peak of each process seen.
    pub async fn stop(self) -> BTreeMap<u32, f64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_vm_rss() {
        let status = "Name:\ttally\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads: 9\n";
        assert_eq!(super::vm_rss_kib(status), Some(123_456));
        assert_eq!(super::vm_rss_kib("Name: x\n"), None);
    }
}
