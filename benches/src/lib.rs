//! What the benchmarks share: knobs read from the environment, the median of repeated runs,
//! and the bare forward passes that inference is measured against.

use std::time::Instant;

use clipfleet_infer::{Device, PARAMS_LEN, RgbFrame, VideoModel, frames_to_batch};
use tch::{Kind, Tensor};

/// `key` from the environment as a count, or `default` when unset or not a number.
pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB; `None` where there is
/// no such process or field (not Linux).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The median of `values` (the upper one of an even count); NaN when there are none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Jobs per second of bare forward passes of `model` at `batch`: no engine, no conversion out,
/// but fed as the engine feeds it (`frames_to_batch`: 8-bit frames permuted to channels-first,
/// which leaves them channels-last in memory), after one untimed warm-up pass (as the engine's
/// registry warms up), and on a thread of its own as the engine's passes run (libtorch's
/// OpenMP settings are per thread, and the main thread's differ from a fresh one's).
pub fn bare_forward_rate(
    model: &VideoModel,
    batch: usize,
    jobs: usize,
    side: u32,
    frames: i64,
) -> f64 {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let pixels = (side * side * 3) as usize;
                let data = (0..pixels).map(|i| (i % 251) as u8).collect();
                let image = RgbFrame::new(side, side, data).expect("frame");
                let images = frames_to_batch(&vec![image; batch], Device::Cpu).expect("batch");
                let params = Tensor::zeros(
                    [batch as i64, PARAMS_LEN as i64],
                    (Kind::Float, Device::Cpu),
                );
                let _warm = model.generate(&images, &params, frames).expect("warm-up");
                let started = Instant::now();
                let mut done = 0;
                while done < jobs {
                    let _video = model.generate(&images, &params, frames).expect("forward");
                    done += batch;
                }
                done as f64 / started.elapsed().as_secs_f64()
            })
            .join()
            .expect("bare forward passes")
    })
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`, in
/// milliseconds at its 10 ms resolution (the kernel reports it in USER_HZ, 100 per second on
/// Linux whatever the kernel's own tick); `None` off Linux.
pub fn process_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: the state is
    // the first, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) * 10)
}
