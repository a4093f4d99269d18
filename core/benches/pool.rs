//! Pool allocator benchmark (`cargo bench -p purelb-core --bench pool`): in a `2001:db8:100::/64` pool,
//! 100,000 `allocate_lowest`, 100,000 `reserve` of scattered addresses, a `release` of every other
//! address taken so far, and 100,000 `allocate_lowest` again (half refill the holes, half extend).
//! Each phase is timed with `Instant` and checked, so a broken allocator fails instead of reporting.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use purelb_core::pool::{Family, Pool, PoolConfig, ip_to_u128, u128_to_ip};

const N: u64 = 100_000;
const NAME: &str = "pool/v6-64";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pool = Pool::new(PoolConfig::parse("2001:db8:100::/64", "2001:db8:100::/64", "default", None)?);
    let base = ip_to_u128(pool.config().range.first());
    let at = |host: u64| u128_to_ip(base + u128::from(host), Family::V6);

    // Phase 1: sequential allocation from an empty pool.
    let mut sequential = Vec::with_capacity(N as usize);
    let elapsed = timed(|| {
        for _ in 0..N {
            sequential.push(black_box(pool.allocate_lowest()));
        }
    });
    report("allocate_lowest", N as usize, elapsed);
    for (host, got) in sequential.iter().enumerate() {
        assert_eq!(*got, Some(at(host as u64)), "allocate_lowest out of order");
    }
    assert_eq!(pool.in_use(), u128::from(N));
    assert_eq!(pool.free_intervals(), 1);

    // Phase 2: reserve scattered addresses. An odd multiplier is a bijection modulo 2^63, so the
    // hosts are distinct; the top bit keeps them clear of the sequential block.
    let scattered: Vec<IpAddr> =
        (0..N).map(|i| at((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & (u64::MAX >> 1)) | (1 << 63))).collect();
    let mut reserve_failures = 0;
    let elapsed = timed(|| {
        for &ip in &scattered {
            reserve_failures += usize::from(black_box(pool.reserve(ip)).is_err());
        }
    });
    report("reserve (scattered)", scattered.len(), elapsed);
    assert_eq!(reserve_failures, 0, "reserve of a free address failed");
    assert_eq!(pool.in_use(), 2 * u128::from(N));
    // One hole below the scattered block, one between each pair, at most one above.
    assert!(pool.free_intervals() > N as usize);

    // Phase 3: release every other address taken (the even sequential ones and every other
    // scattered one), leaving 50,000 one-address holes in the sequential block.
    let to_release: Vec<IpAddr> =
        (0..N).step_by(2).map(at).chain(scattered.iter().step_by(2).copied()).collect();
    let mut released = 0u64;
    let elapsed = timed(|| {
        for &ip in &to_release {
            released += u64::from(black_box(pool.release(ip)));
        }
    });
    report("release (every other)", to_release.len(), elapsed);
    assert_eq!(released, N, "release of an address in use returned false");
    assert_eq!(pool.in_use(), u128::from(N));

    // Phase 4: allocate again; the first half must refill the holes lowest first, the rest continue
    // after the sequential block.
    let mut again = Vec::with_capacity(N as usize);
    let elapsed = timed(|| {
        for _ in 0..N {
            again.push(black_box(pool.allocate_lowest()));
        }
    });
    report("allocate_lowest (after release)", N as usize, elapsed);
    for (i, got) in again.iter().enumerate() {
        let i = i as u64;
        let expected = if i < N / 2 { at(2 * i) } else { at(N + i - N / 2) };
        assert_eq!(*got, Some(expected), "allocate_lowest after release out of order");
    }
    assert_eq!(pool.in_use(), 2 * u128::from(N));
    assert_eq!(pool.available(), (1u128 << 64) - 2 * u128::from(N));
    Ok(())
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn report(phase: &str, ops: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!("{NAME} {phase} x{ops}: {:.1} ms ({:.1} M ops/s)", secs * 1e3, ops as f64 / secs / 1e6);
}
