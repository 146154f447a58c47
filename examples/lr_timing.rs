use rankgrad::lambdas::*;
fn main() {
    let (q, m) = (2000usize, 200usize);
    let n = q * m;
    let mut x = 12345u64;
    let mut rnd = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x >> 11) as f64 / (1u64 << 53) as f64 };
    let s: Vec<f64> = (0..n).map(|_| rnd()).collect();
    let y: Vec<f32> = (0..n).map(|_| (rnd() * 5.0).floor() as f32).collect();
    let group = vec![m as i64; q];
    let gain = default_label_gain();
    let ks: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    for k in ks {
        let o = LambdaOptions { truncation: k, ..Default::default() };
        let (mut g, mut h) = (vec![0.0; n], vec![0.0; n]);
        let mut best = f64::MAX;
        for _ in 0..40 {
            let t = std::time::Instant::now();
            lambdarank_gradients(&s, &y, &group, &gain, None, &o, &mut g, &mut h).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("k={k} best {:.4}s threads={}", best, rayon::current_num_threads());
    }
}
