//! The process guard.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use testenv::{Process, free_port};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn dropping_the_guard_kills_and_reaps_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sleep.log");
    let process = Process::spawn(
        "sh",
        Command::new("sh").args(["-c", "echo started; exec sleep 600"]),
        &log,
    )
    .unwrap();
    let pid = process.id();
    assert!(alive(pid));
    let deadline = Instant::now() + Duration::from_secs(5);
    while process.log_tail(1) != "started" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(process.log_tail(1), "started");
    drop(process);
    assert!(!alive(pid));
}

#[tokio::test]
async fn terminate_stops_with_sigterm_before_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = Process::spawn(
        "sleep",
        Command::new("sleep").arg("600"),
        dir.path().join("sleep.log"),
    )
    .unwrap();
    let started = Instant::now();
    let status = process.terminate(Duration::from_secs(30)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!status.success());
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15)
    );
    assert!(process.try_status().unwrap().is_some());
}

#[test]
fn free_port_can_be_bound() {
    let port = free_port().unwrap();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}
