//! kimp-bench: tick-to-order latency, throughput, memory, loopback and peers on real
//! recorded venue data. Results and the exact commands are in bench/RESULTS.md.
//!
//! `cargo run --release -p kimp-bench -- --quick --json` (under a minute; the last stdout
//! line is one JSON object) and `bench/run.sh` (the whole suite, with nautilus_trader).

mod affinity;
mod alloc;
mod data;
mod depth;
mod peers;
mod runtime;
mod stats;
mod throughput;
mod tick;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// Latency, throughput, memory and peer benchmarks for kimp.
#[derive(Debug, Parser)]
#[command(name = "kimp-bench", version)]
struct Args {
    /// Short run (under a minute): 200k tick-to-order messages, 5 passes per figure,
    /// memory and loopback with 1 coin only.
    #[arg(long)]
    quick: bool,
    /// Full run: 1.2M tick-to-order messages, 15 passes per figure, 1 and 10 coins.
    #[arg(long, conflicts_with = "quick")]
    full: bool,
    /// Print the summary as one JSON object on the last stdout line.
    #[arg(long)]
    json: bool,
    /// Only these sections (tick, throughput, peers, memory); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// CPU to pin the measuring thread to (default: the last one).
    #[arg(long)]
    core: Option<usize>,
    /// Write the full report (JSON) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the pre-parsed Binance diffs for bench/peers/nautilus_book.py and exit.
    #[arg(long)]
    export_deltas: Option<PathBuf>,
    /// Include nautilus_trader's result (the JSON bench/peers/nautilus_book.py printed).
    #[arg(long)]
    nautilus: Option<PathBuf>,
    /// Instruction-count mode for bench/callgrind.sh: N messages through parse + engine +
    /// encode/sign, no clocks.
    #[arg(long, value_name = "N")]
    callgrind: Option<u64>,
    /// Internal: the runtime child process of the memory/loopback section.
    #[arg(long, num_args = 7, hide = true, allow_hyphen_values = true)]
    runtime_child: Option<Vec<String>>,
}

fn wants(a: &Args, s: &str) -> bool {
    a.only.is_empty() || a.only.iter().any(|o| o == s)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if std::env::var_os("KIMP_BENCH_ALLOC_TRACE").is_some() {
        alloc::trace_each();
    }
    if let Some(c) = &args.runtime_child {
        return runtime::child(c);
    }
    // Read the CPU list before anything is pinned (core_affinity reports the caller's mask).
    let cpus = affinity::Cpus::read();
    let bin = data::Binance::load()?;
    if let Some(p) = &args.export_deltas {
        let parsed = depth::Parsed::new(&bin);
        peers::export_deltas(&parsed, p)?;
        println!(
            "wrote {} diffs ({} levels) to {}",
            parsed.diffs.len(),
            parsed.level_count(),
            p.display()
        );
        return Ok(());
    }
    let up = data::Upbit::load()?;
    if let Some(n) = args.callgrind {
        let mut stream = tick::Stream::build(&bin, &up)?;
        let (orders, closed) = tick::callgrind_loop(&mut stream, 20_000, n)?;
        println!("callgrind: {n} messages measured; orders {orders}, pairs closed {closed}");
        return Ok(());
    }
    let (msgs, warm, reps) =
        if args.full { (1_200_000, 100_000, 15) } else { (200_000, 30_000, 5) };
    let mem_coins: &[usize] = if args.full { &[1, 10] } else { &[1] };
    let mem_secs = if args.full { 30.0 } else { 6.0 };
    let mut report = serde_json::Map::new();
    report.insert("mode".into(), json!(if args.full { "full" } else { "quick" }));
    report.insert("machine".into(), machine());
    let pinned = cpus.pin(args.core);
    println!(
        "kimp-bench ({} mode), measuring thread pinned to CPU {:?}",
        if args.full { "full" } else { "quick" },
        pinned
    );
    report.insert("pinned_cpu".into(), json!(pinned));
    let parsed = depth::Parsed::new(&bin);
    if wants(&args, "tick") {
        println!("\n== tick-to-order, in process ({msgs} messages after {warm} warm-up)");
        let mut stream = tick::Stream::build(&bin, &up)?;
        report.insert("tick_to_order".into(), tick::run(&mut stream, warm, msgs)?);
    }
    if wants(&args, "throughput") {
        println!("\n== throughput, one core: Binance depth (real stream)");
        report.insert("binance_depth".into(), throughput::binance(&bin, &parsed, reps));
        println!("\n== throughput: Upbit 15-level books");
        report.insert("upbit_books".into(), throughput::upbit(&up, reps * 20));
        println!("\n== premium recomputation and signing");
        report.insert("premium".into(), throughput::premium(&up, &parsed, reps));
        report.insert("signing".into(), throughput::signing(reps));
    }
    if wants(&args, "peers") {
        println!("\n== peers: hftbacktest depth structures, apply only, same diffs");
        report.insert("hftbacktest".into(), peers::hftbacktest(&parsed, reps * 2));
        println!("\n== peers: JSON parsers on the same frames");
        report.insert("json_peers".into(), peers::json(&bin, reps));
        if let Some(p) = &args.nautilus {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(p)?)?;
            println!("\n== peers: nautilus_trader (from {})", p.display());
            let ours = report.get("binance_depth").map(|b| {
                (
                    &b["apply_only_after_ladder"]["ns_per_msg"],
                    &b["parse_apply_after_ladder"]["ns_per_msg"],
                )
            });
            let mut v = v;
            if let Some((a, pa)) = ours
                && let (Some(a), Some(pa)) = (a.as_f64(), pa.as_f64())
            {
                let ra = v["apply_only_ns_per_msg"].as_f64().unwrap_or(f64::NAN) / a;
                let rb = v["build_apply_ns_per_msg"].as_f64().unwrap_or(f64::NAN) / pa;
                println!(
                    "  nautilus_trader {} from Python: apply only {} ns/msg ({ra:.1}x kimp's apply), build+apply {} ns/msg ({rb:.1}x kimp's parse+apply)",
                    v["nautilus_trader_version"],
                    v["apply_only_ns_per_msg"],
                    v["build_apply_ns_per_msg"]
                );
                v["kimp_vs_apply_only_ratio"] = json!((ra * 10.0).round() / 10.0);
                v["kimp_parse_apply_vs_build_apply_ratio"] = json!((rb * 10.0).round() / 10.0);
            }
            report.insert("nautilus".into(), v);
        }
    }
    cpus.unpin();
    if wants(&args, "memory") {
        let exe = std::env::current_exe()?;
        let mut runs = Vec::new();
        for &c in mem_coins {
            println!("\n== runtime over loopback with the simulator, {c} coin(s), {mem_secs} s");
            match runtime::measure(&exe, c, mem_secs, &cpus) {
                Ok(v) => {
                    println!(
                        "  peak RSS {} KiB, loop allocations after warm-up {}, orders {}, tap md→order {}",
                        v["vm_hwm_kib"],
                        v["loop_thread_allocations_after_warmup"],
                        v["orders_sent"],
                        v["tap_md_to_order"]
                    );
                    println!("  runtime stages: {}", v["runtime_stages_whole_run"]);
                    runs.push(v);
                }
                Err(e) => {
                    println!("  failed: {e:#}");
                    runs.push(json!({"coins": c, "error": format!("{e:#}")}));
                }
            }
        }
        report.insert("runtime_loopback".into(), Value::Array(runs));
    }
    let summary = summary(&report);
    report.insert("summary".into(), summary.clone());
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&Value::Object(report.clone()))?)?;
    }
    println!("\n== summary\n{}", serde_json::to_string_pretty(&summary)?);
    if args.json {
        println!("{summary}");
    }
    Ok(())
}

/// The headline figures (the `--json` line).
fn summary(r: &serde_json::Map<String, Value>) -> Value {
    let g = |path: &[&str]| -> Value {
        let mut v = r.get(path[0]).cloned().unwrap_or(Value::Null);
        for k in &path[1..] {
            v = v.get(*k).cloned().unwrap_or(Value::Null);
        }
        v
    };
    let rss = |coins: u64| {
        r.get("runtime_loopback")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|v| v["coins"] == json!(coins)))
            .map_or(Value::Null, |v| v["vm_hwm_kib"].clone())
    };
    let hot_allocs = g(&["tick_to_order", "allocations"]);
    json!({
        "tick_to_order_p50_ns": g(&["tick_to_order", "tick_to_order", "p50_ns"]),
        "tick_to_order_p99_ns": g(&["tick_to_order", "tick_to_order", "p99_ns"]),
        "tick_to_order_p999_ns": g(&["tick_to_order", "tick_to_order", "p999_ns"]),
        "tick_to_order_max_ns": g(&["tick_to_order", "tick_to_order", "max_ns"]),
        "tick_to_order_n": g(&["tick_to_order", "tick_to_order", "n"]),
        "per_message_p50_ns": g(&["tick_to_order", "total_per_message", "p50_ns"]),
        "per_message_p999_ns": g(&["tick_to_order", "total_per_message", "p999_ns"]),
        "binance_depth_msgs_per_s": g(&["binance_depth", "parse_apply_after_ladder", "msgs_per_s"]),
        "binance_depth_msgs_per_s_before": g(&["binance_depth", "parse_apply_before_sorted_array", "msgs_per_s"]),
        "upbit_book_msgs_per_s": g(&["upbit_books", "parse_apply_default_fixtures", "msgs_per_s"]),
        "upbit_simple_book_msgs_per_s": g(&["upbit_books", "parse_apply_simple_recording", "msgs_per_s"]),
        "hot_path_allocs": hot_allocs,
        "vs_hftbacktest_ratio": g(&["hftbacktest", "vs_fastest_ratio"]),
        "vs_serde_json_btreemap_ratio": g(&["json_peers", "kimp_vs_serde_json_btreemap"]),
        "vs_nautilus_apply_ratio": g(&["nautilus", "kimp_vs_apply_only_ratio"]),
        "runtime_rss_kib_1_coin": rss(1),
        "runtime_rss_kib_10_coins": rss(10),
    })
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    let load = std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string());
    json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": kernel,
        "loadavg_at_start": load,
    })
}
