//! The faults a cluster meets in its first week, over real broker
//! processes: restarts straight after SIGKILL, more shards than cores,
//! a full disk, brokers restarting under consumers, controlled shutdown.

mod common;

use common::{batch_of, reserved_port, temp_dir, Broker};
use shardlog::protocol::ErrorCode;

fn online_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A supervisor restarts a broker the moment it died: the dead process's
/// listener lingers in the kernel's table for a moment after it was
/// reaped, and that must not read as "another broker listens here".
#[test]
fn a_broker_killed_with_sigkill_restarts_at_once_on_its_port() {
    let dir = temp_dir();
    let listen = format!("127.0.0.1:{}", reserved_port());
    let mut b = Broker::start_listening(None, dir.path(), 1, &listen, &[]);
    assert_eq!(b.client().create_topic("t", 1), ErrorCode::None);
    for round in 0..5 {
        let mut c = b.client();
        let (err, _) = c.produce("t", 0, &batch_of(&[format!("m{round}").as_bytes()]), -1);
        assert_eq!(err, ErrorCode::None);
        drop(c);
        b.kill9();
        // No pause: what a supervisor does. `start_listening` panics with
        // the broker's output if it refuses to start.
        b = Broker::start_listening(None, dir.path(), 1, &listen, &[]);
        assert_eq!(b.addr.to_string(), listen, "round {round}");
    }
    let values = b.client().fetch_all_values("t", 0, 0);
    let want: Vec<Vec<u8>> = (0..5).map(|r| format!("m{r}").into_bytes()).collect();
    assert_eq!(values, want, "every acknowledged record is there");
}

#[test]
fn more_shards_than_cores_is_refused_with_the_override_named() {
    let dir = temp_dir();
    let shards = (online_cores() + 1).to_string();
    // `refused` fails the test if the broker starts serving instead.
    let (status, err) = Broker::refused_with(dir.path(), &["--listen", "127.0.0.1:0", "--shards", &shards]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("--shards {shards}")) && err.contains("--allow-more-shards-than-cores"), "{err}");
}
