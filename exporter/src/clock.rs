//! Kernel timestamps are CLOCK_BOOTTIME; OTLP wants Unix time. The offset
//! between the two is sampled when asked and applied per event.

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// CLOCK_BOOTTIME now, in ns: the clock BPF's `bpf_ktime_get_boot_ns` reads.
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Unix time now, in ns.
pub fn unix_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Converts boot-clock timestamps to Unix time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// unix_ns - boot_ns, sampled at `sample()`.
    offset: i128,
    /// Both clocks when sampled: a reader samples once per wake, and the
    /// records of that wake take it as their "now" (observed time, pipeline
    /// latency) instead of two clock reads each (3 % of the agent's CPU
    /// under load; the records handled before one in the same wake, well
    /// under a millisecond of work, are not in its latency).
    boot_ns: u64,
    unix_ns: u64,
}

impl WallClock {
    /// Sample the offset now. Reading boot, real, boot and taking the
    /// midpoint bounds the error by the gap between the two boot reads.
    pub fn sample() -> Self {
        let b0 = boot_ns();
        let r = unix_ns();
        let b1 = boot_ns();
        let mid = (b0 as i128 + b1 as i128) / 2;
        Self {
            offset: r as i128 - mid,
            boot_ns: b1,
            unix_ns: r,
        }
    }

    /// A clock with a fixed offset, for tests.
    pub fn with_offset(offset: i128) -> Self {
        Self {
            offset,
            boot_ns: boot_ns(),
            unix_ns: unix_ns(),
        }
    }

    /// CLOCK_BOOTTIME when sampled.
    pub fn sampled_boot_ns(&self) -> u64 {
        self.boot_ns
    }

    /// Unix time when sampled.
    pub fn sampled_unix_ns(&self) -> u64 {
        self.unix_ns
    }

    pub fn to_unix_ns(&self, boot_ns: u64) -> u64 {
        (boot_ns as i128 + self.offset).clamp(0, u64::MAX as i128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_now_to_now() {
        let c = WallClock::sample();
        let got = c.to_unix_ns(boot_ns());
        let want = unix_ns();
        assert!(
            got.abs_diff(want) < 50_000_000,
            "off by {} ns",
            got.abs_diff(want)
        );
    }
}
