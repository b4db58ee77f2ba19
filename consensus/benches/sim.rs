//! Decided heights per CPU-second in the simulator, at n = 4 and n = 10.
//!
//! `cargo bench -p tally-consensus --bench sim`. One iteration runs a whole
//! cluster (every node's state machine, the network, signatures with the
//! test scheme) on one thread until every node has decided 100 heights on a
//! healthy network; throughput is reported in heights per CPU-second of that
//! thread (`elem/s`), measured with the thread's scheduler clock
//! (`/proc/thread-self/schedstat`, wall time where that is missing), so that
//! other load on the machine does not count.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[allow(dead_code)]
#[path = "../tests/it/sim/mod.rs"]
mod sim;

use sim::Sim;
use sim::scenario::Scenario;

const HEIGHTS: u64 = 100;

/// CPU time of the current thread, in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            // No scheduler statistics: fall back to wall time.
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            let start = START.get_or_init(std::time::Instant::now);
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns cpu")
        } else if typical < 1e6 {
            (1e-3, "µs cpu")
        } else if typical < 1e9 {
            (1e-6, "ms cpu")
        } else {
            (1e-9, "s cpu")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iteration = match throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                *n as f64
            }
        };
        for v in values {
            *v = per_iteration * 1e9 / *v;
        }
        "heights/cpu-s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn scenario(n: usize) -> Scenario {
    let mut s = Scenario::base("bench", n);
    s.target_height = HEIGHTS;
    s
}

fn bench(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("simulator");
    group.sample_size(10);
    group.throughput(Throughput::Elements(HEIGHTS));
    for n in [4, 10] {
        group.bench_function(format!("n={n}"), |b| {
            let mut seed = 0;
            b.iter(|| {
                seed += 1;
                let trace = Sim::new(scenario(n), seed).run();
                assert!(
                    trace.final_heights.iter().all(|h| *h >= HEIGHTS),
                    "the cluster did not reach {HEIGHTS} heights"
                );
                trace
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench
}
criterion_main!(benches);
