//! A panic in any simulator thread stops `kimp sim` with a non-zero exit and a message
//! naming the thread (the `KIMP_SIM_PANIC` failpoint makes one panic on purpose).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sim(panic: Option<&str>, duration: &str) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kimp"));
    c.args(["sim", "--print-urls", "--duration", duration])
        .env_remove("KIMP_SIM_PANIC")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = panic {
        c.env("KIMP_SIM_PANIC", p);
    }
    c.spawn().expect("spawn kimp sim")
}

/// Waits up to `secs` for the child; kills it (and fails) when it is still running.
fn wait(mut child: Child, secs: u64) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            child.stderr.take().expect("stderr").read_to_string(&mut err).expect("stderr");
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kimp sim still running {secs} s after a thread panicked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_clock_panic_stops_kimp_sim_with_an_error_naming_the_thread() {
    let started = Instant::now();
    let (code, err) = wait(sim(Some("sim-clock@20"), "60"), 30);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("simulator thread 'sim-clock' panicked: KIMP_SIM_PANIC failpoint"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "stopped at once, not at --duration");
}

#[test]
fn a_connection_thread_panic_stops_kimp_sim_too() {
    let mut child = sim(Some("sim-binance-conn"), "60");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("urls");
    let urls: serde_json::Value = serde_json::from_str(&line).expect("--print-urls JSON");
    let addr = urls["binance_rest"].as_str().expect("binance_rest").trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /fapi/v1/time HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(answer.is_empty(), "the panicking connection answered nothing");
    let (code, err) = wait(child, 30);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("simulator thread 'sim-binance-conn' panicked"), "{err}");
}

#[test]
fn without_the_failpoint_kimp_sim_runs_to_its_duration_and_exits_zero() {
    let (code, err) = wait(sim(None, "1"), 30);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kimp sim: stopped after"), "{err}");
}
