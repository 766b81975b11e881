//! What the freezing kernel showed the process (the image's Kernel section): its
//! clocks while it is stopped, so a resume after a reboot or on another machine can
//! keep them from going backwards, and the limits that differ between kernels.
//!
//! The clocks are this process's, moved into the target's time namespace when it
//! is in another one (a process resumed before with its clocks moved forward):
//! /proc/PID/timens_offsets gives that namespace's offsets (time_namespaces(7);
//! it shows the namespace of the process's children, which is its own unless it
//! called unshare(CLONE_NEWTIME) without forking since).

use ckpt_format::{KernelState, CLK_BOOTTIME, CLK_MONOTONIC, CLK_MONOTONIC_COARSE, CLK_MONOTONIC_RAW, KERNEL_HAVE_CLOCKS};

fn read_num(path: &str) -> u64 {
    crate::proc::read_file_text(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Offsets (ns) of the monotonic and boottime clocks of `pid`'s time namespace
/// relative to ours; zero when it is ours.
fn offsets(pid: i32) -> [i128; 2] {
    let ns = |p: &str| std::fs::read_link(p).ok();
    if ns(&format!("/proc/{pid}/ns/time")) == ns("/proc/self/ns/time") {
        return [0, 0];
    }
    let parse = |text: &str| {
        let mut o = [0i128; 2];
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(name), Some(s), Some(n)) = (f.first(), f.get(1), f.get(2)) else { continue };
            let v = s.parse::<i128>().unwrap_or(0) * 1_000_000_000 + n.parse::<i128>().unwrap_or(0);
            match *name {
                "monotonic" | "1" => o[0] = v,
                "boottime" | "7" => o[1] = v,
                _ => {}
            }
        }
        o
    };
    let theirs = parse(&std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap_or_default());
    let ours = parse(&std::fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default());
    [theirs[0] - ours[0], theirs[1] - ours[1]]
}

pub fn capture(pid: i32) -> KernelState {
    let mut clocks = crate::check::clocks();
    let [mono, boot] = offsets(pid);
    let shift = |v: u64, by: i128| (v as i128 + by).max(0) as u64;
    for i in [CLK_MONOTONIC, CLK_MONOTONIC_RAW, CLK_MONOTONIC_COARSE] {
        clocks[i] = shift(clocks[i], mono);
    }
    clocks[CLK_BOOTTIME] = shift(clocks[CLK_BOOTTIME], boot);
    // Read one after the other, the monotonic clock may pass boottime by a hair
    // where nothing was ever suspended.
    clocks[CLK_BOOTTIME] = clocks[CLK_BOOTTIME].max(clocks[CLK_MONOTONIC]);
    KernelState {
        flags: KERNEL_HAVE_CLOCKS,
        pid_max: read_num("/proc/sys/kernel/pid_max") as u32,
        mmap_min_addr: read_num("/proc/sys/vm/mmap_min_addr"),
        clocks,
    }
}
