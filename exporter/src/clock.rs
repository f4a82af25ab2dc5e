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
        }
    }

    /// A clock with a fixed offset, for tests.
    pub fn with_offset(offset: i128) -> Self {
        Self { offset }
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
