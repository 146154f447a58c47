//! Timings of the approx kernels (ignored; run with
//! `cargo test --release approx::bench -- --ignored --nocapture --test-threads 1`).

use std::time::Instant;

use super::*;
use crate::testing::Rng;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// CPU seconds of the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`): with one thread, a
/// timing that other processes on the machine disturb less than the wall clock.
fn thread_cpu() -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { clock_gettime(3, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

/// The best seconds of `reps` runs of `f` (after one warm-up) on a pool of `threads` (the
/// machine is shared): wall clock, or with one thread and `BENCH_CPU` set, the thread's CPU time.
fn time(threads: usize, reps: usize, mut f: impl FnMut() + Send) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let cpu = threads == 1 && std::env::var("BENCH_CPU").is_ok();
    pool.install(|| {
        f();
        let t: Vec<f64> = (0..reps)
            .map(|_| {
                let (t0, c0) = (Instant::now(), thread_cpu());
                f();
                if cpu {
                    thread_cpu() - c0
                } else {
                    t0.elapsed().as_secs_f64()
                }
            })
            .collect();
        t.iter().copied().fold(f64::INFINITY, f64::min)
    })
}

struct Data {
    b: usize,
    n: usize,
    s: Vec<f32>,
    y: Vec<f32>,
    v: Vec<f32>,
}

fn data(b: usize, n: usize, seed: u64, spread: f64) -> Data {
    let mut rng = Rng(seed);
    let s = (0..b * n).map(|_| (spread * rng.normal()) as f32).collect();
    let y = (0..b * n).map(|_| rng.label(4) as f32).collect();
    let v = (0..b * n).map(|_| rng.normal() as f32).collect();
    Data { b, n, s, y, v }
}

fn loss_grad(d: &Data, method: Method, threads: usize, reps: usize) -> f64 {
    let batch = Padded::new(&d.s, Some(&d.y), None, d.b, d.n).unwrap();
    let (mut l, mut ok, mut g) = (vec![0.0f32; d.b], vec![false; d.b], vec![0.0f32; d.b * d.n]);
    let kind = ApproxLoss::Ndcg { scale_gains: true };
    time(threads, reps, || approx_loss(&batch, 1.0, kind, method, &mut l, &mut ok, Some(&mut g)).unwrap())
}

fn hvp(d: &Data, method: Method, threads: usize, reps: usize) -> f64 {
    let batch = Padded::new(&d.s, Some(&d.y), None, d.b, d.n).unwrap();
    let mut out = vec![0.0f32; d.b * d.n];
    let kind = ApproxLoss::Ndcg { scale_gains: true };
    time(threads, reps, || approx_loss_hvp(&batch, 1.0, kind, method, &d.v, &mut out).unwrap())
}

#[test]
#[ignore]
fn bench_issue_targets() {
    for threads in [1, 2] {
        eprintln!("--- {threads} thread(s), f32, approx_ndcg loss + grad (ms)");
        let d = data(64, 1000, 1, 1.0);
        let (e, f, a) = (
            loss_grad(&d, Method::Exact, threads, 7),
            loss_grad(&d, Method::Fast, threads, 15),
            loss_grad(&d, Method::Auto, threads, 15),
        );
        eprintln!(
            "64x1000: exact {:.2} fast {:.2} auto {:.2} (exact/fast {:.1}x)",
            e * 1e3,
            f * 1e3,
            a * 1e3,
            e / f
        );
        let (he, hf) = (hvp(&d, Method::Exact, threads, 7), hvp(&d, Method::Fast, threads, 15));
        eprintln!(
            "64x1000 hvp: exact {:.2} ({:.2}x grad) fast {:.2} ({:.2}x grad)",
            he * 1e3,
            he / e,
            hf * 1e3,
            hf / f
        );
        let d = data(256, 100, 2, 1.0);
        let (e, a) = (loss_grad(&d, Method::Exact, threads, 31), loss_grad(&d, Method::Auto, threads, 31));
        eprintln!("256x100: exact {:.3} auto {:.3} (auto/exact {:.2})", e * 1e3, a * 1e3, a / e);
        let d = data(1, 30_000, 3, 1.0);
        let (e, f) = (loss_grad(&d, Method::Exact, threads, 3), loss_grad(&d, Method::Fast, threads, 11));
        eprintln!("1x30000: exact {:.1} fast {:.2} ({:.0}x)", e * 1e3, f * 1e3, e / f);
        let d = data(1, 1_000_000, 4, 1.0);
        let f = loss_grad(&d, Method::Fast, threads, 5);
        eprintln!("1x1000000: fast {:.1}", f * 1e3);
    }
}

/// Per-list cost of both methods by list size (FAST_MIN_N), one thread.
#[test]
#[ignore]
fn bench_cutoff() {
    for n in [50, 75, 100, 125, 150, 200, 250, 300, 400, 500, 700, 1000] {
        let b = 200_000 / n;
        let d = data(b, n, n as u64, 1.0);
        let (e, f) = (loss_grad(&d, Method::Exact, 1, 9), loss_grad(&d, Method::Fast, 1, 9));
        let per = |t: f64| t / b as f64 * 1e6;
        eprintln!(
            "n={n:5}: exact {:8.2} us/list  fast {:8.2} us/list  exact/fast {:.2}",
            per(e),
            per(f),
            e / f
        );
    }
}

/// Direct vs interpolated segments by occupancy (FAST_MIN_OCCUPANCY, FAST_MIN_SEGMENT): lists
/// whose items are spread so that each cell of width T holds about `occ` of them.
#[test]
#[ignore]
fn bench_occupancy() {
    use std::sync::atomic::Ordering;
    for n in [5000, 300, 64, 32, 16] {
        for occ in [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 1000.0] {
            let b = 100_000 / n;
            let mut rng = Rng(9);
            let s: Vec<f32> = (0..b * n).map(|_| (rng.next() * n as f64 / occ) as f32).collect();
            let d = Data { b, n, y: vec![1.0; b * n], v: vec![0.5; b * n], s };
            let mut p = fast::Plan::default();
            p.build(&d.s[..n], 1.0);
            let (_, _, c) = p.stats();
            fast::FORCE.store(1, Ordering::Relaxed);
            let ti = loss_grad(&d, Method::Fast, 1, 7);
            fast::FORCE.store(2, Ordering::Relaxed);
            let td = loss_grad(&d, Method::Fast, 1, 7);
            fast::FORCE.store(0, Ordering::Relaxed);
            let per = |t: f64| t / b as f64 * 1e6;
            eprintln!(
                "n={n:5} occ={occ:6} (n/cells {:6.1}): interp {:9.2} us/list direct {:9.2} us/list  direct/interp {:.2}",
                n as f64 / c.max(1) as f64,
                per(ti),
                per(td),
                td / ti
            );
        }
    }
}

/// Where the time of one fast list goes.
#[test]
#[ignore]
fn bench_breakdown() {
    for (n, reps) in [(1000usize, 2000usize), (1_000_000, 3)] {
        let d = data(1, n, 5, 1.0);
        let mut p = fast::Plan::default();
        let mut sc = fast::Scratch::default();
        let tb = time(1, reps, || p.build(&d.s, 1.0));
        let mut ws = vec![1.0; 4 * n];
        let mut out = Vec::new();
        let t1 = time(1, reps, || p.sums::<SIG, 1>(&ws, &mut out, &mut sc));
        let t2 = time(1, reps, || p.sums::<D1, 2>(&ws, &mut out, &mut sc));
        let t4 = time(1, reps, || p.sums::<D2, 4>(&ws, &mut out, &mut sc));
        let mut dst = vec![0.0; n];
        let tp = time(1, reps, || p.to_sorted(|i| ws[i], &mut dst));
        let mut keys: Vec<(u64, usize)> = (0..n).map(|i| (d.s[i].to_bits() as u64, i)).collect();
        let ts = time(1, reps, || {
            keys.sort_unstable();
        });
        ws[0] = 1.0;
        let (i, dd, c) = p.stats();
        eprintln!(
            "n={n}: build {:.1} us (sorted re-sort {:.1}), sig1 {:.1}, d1x2 {:.1}, d2x4 {:.1}, permute {:.1} [interp {i} direct {dd} cells {c}]",
            tb * 1e6, ts * 1e6, t1 * 1e6, t2 * 1e6, t4 * 1e6, tp * 1e6
        );
        let dd = data(1, n, 5, 1.0);
        let lg = loss_grad(&dd, Method::Fast, 1, reps);
        eprintln!("   loss+grad {:.1} us", lg * 1e6);
    }
}

/// A loop for `perf record`: 64 x 1000 f32, fast loss + grad, one thread.
#[test]
#[ignore]
fn profile_fast_1000() {
    let d = data(64, 1000, 1, 1.0);
    let t = loss_grad(&d, Method::Fast, 1, 301);
    eprintln!("{:.2} ms", t * 1e3);
}

/// A loop for `perf record`: 1 x 30000 f32, fast loss + grad, one thread.
#[test]
#[ignore]
fn profile_fast_30k() {
    let d = data(1, 30_000, 3, 1.0);
    let t = loss_grad(&d, Method::Fast, 1, 101);
    eprintln!("{:.2} ms", t * 1e3);
}

/// A loop for `perf record`: 1 x 1,000,000 f32, fast loss + grad, `PROFILE_THREADS` threads.
#[test]
#[ignore]
fn profile_fast_1m() {
    let threads = std::env::var("PROFILE_THREADS").map_or(1, |v| v.parse().unwrap());
    let d = data(1, 1_000_000, 4, 1.0);
    let t = loss_grad(&d, Method::Fast, threads, 9);
    eprintln!("{:.2} ms", t * 1e3);
}

/// 1 x 1,000,000 f32, fast loss + grad, 1 and 2 threads alternately (the best of each).
#[test]
#[ignore]
fn bench_1m_scaling() {
    let d = data(1, 1_000_000, 4, 1.0);
    let (mut one, mut two) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        one = one.min(loss_grad(&d, Method::Fast, 1, 3));
        two = two.min(loss_grad(&d, Method::Fast, 2, 3));
    }
    eprintln!(
        "1x1000000 fast loss+grad: 1 thread {:.1} ms, 2 threads {:.1} ms ({:.2}x)",
        one * 1e3,
        two * 1e3,
        one / two
    );
}
