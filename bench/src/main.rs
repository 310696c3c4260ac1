//! kimp-bench: latency and throughput harnesses (see bench/RESULTS.md).

fn main() {
    println!("kimp-bench: no harness yet");
}
