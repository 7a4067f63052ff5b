//! `floor`: what a delivery costs at the very least on this machine. No broker: one thread writes a
//! pre-encoded WebSocket text frame (the size of a fan-out event) to each loopback socket of a
//! channel, at the fan-out scenario's sizes and rate, and reports its own CPU per write.
//!
//! A broker that writes each delivery to its own socket cannot spend less than one `write` per
//! delivery, so the broker's CPU per delivery in `fanout` divided by this figure, measured on the same
//! machine in the same session, says how far it is from the floor. The writer thread reads its CPU
//! time from `/proc/thread-self/stat` (user + system, clock ticks), so the readers draining the
//! sockets (tokio tasks on the generator's runtime) are not counted; `--writer-cpu 0` pins the writer
//! where the broker would run (`taskset -p`), and `taskset -c 1` on the bench keeps the readers on the
//! generator's core. This module must never talk to a broker: it is the reference a broker is
//! compared with.

use std::io::Write;
use std::net::TcpStream as StdTcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::procfs;
use crate::report::{BrokerStats, Report};

use super::{say, Ctx, Window};

/// How often the drain checks whether every written byte has been read.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Read buffer of each draining socket.
const READ_BUFFER: usize = 4096;

/// The floor's settings, the fan-out scenario's by default.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Loopback sockets written to.
    pub sockets: usize,
    /// Channels: socket `i` is on channel `i % channels`, and each trigger writes to one channel's
    /// sockets, as the fan-out does.
    pub channels: usize,
    /// Triggers per second, over all channels.
    pub rate: f64,
    /// Measured seconds.
    pub duration: Duration,
    /// Unmeasured seconds before.
    pub warmup: Duration,
    /// Padding bytes in each event's data, as `fanout --payload`.
    pub payload: usize,
    /// The CPU to pin the writer thread to, if any.
    pub writer_cpu: Option<usize>,
    /// Longest wait for the readers to catch up after the last write.
    pub drain: Duration,
}

/// The writer thread's figures over the measured window.
struct Written {
    /// Writes (frames) in the measured window.
    writes: u64,
    /// Bytes written in the whole run, warm-up included.
    bytes_total: u64,
    /// Writer CPU seconds in the measured window.
    cpu_s: f64,
    /// Length of the measured window.
    window: Duration,
}

/// The WebSocket text frame a broker would send for one bench event on `channel`: the same JSON
/// shape and size as the broker's `pusher` channel event, with a server (unmasked) frame header.
pub fn event_frame(channel: &str, payload: usize) -> Vec<u8> {
    let data = format!(
        r#"{{"run":1,"seq":1000000,"ts":1000000000,"pad":"{}"}}"#,
        "x".repeat(payload)
    );
    let text = json!({ "event": "bench", "channel": channel, "data": data }).to_string();
    let len = text.len();
    let mut frame = Vec::with_capacity(len + 10);
    frame.push(0x81); // FIN + text
    if len < 126 {
        frame.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        frame.push(126);
        frame.extend_from_slice(&short.to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// Runs `floor`: opens the socket pairs, drains one side on the runtime, writes on a thread.
pub async fn floor(ctx: &Ctx, f: Floor) -> Result<Report> {
    if f.sockets == 0 || f.channels == 0 || f.rate <= 0.0 {
        bail!("floor needs at least one socket, one channel and a positive rate");
    }
    let notes = ctx.limit_notes(2 * f.sockets);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback listener")?;
    let addr = listener.local_addr()?;
    say(ctx, format!("opening {} loopback socket pairs", f.sockets));
    let received = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::with_capacity(f.sockets);
    let mut readers = Vec::with_capacity(f.sockets);
    for _ in 0..f.sockets {
        let (client, accepted) = tokio::try_join!(TcpStream::connect(addr), listener.accept())
            .context("opening a loopback socket pair")?;
        let server = accepted.0.into_std()?;
        server.set_nonblocking(false)?;
        server.set_nodelay(true)?;
        writers.push(server);
        readers.push(tokio::spawn(drain_socket(client, Arc::clone(&received))));
    }
    let frame = event_frame("bench-0", f.payload);
    say(
        ctx,
        format!(
            "writing {} frames of {} bytes per second for {:.1}s (+{:.1}s warm-up)",
            f.rate * (f.sockets / f.channels) as f64,
            frame.len(),
            f.duration.as_secs_f64(),
            f.warmup.as_secs_f64()
        ),
    );
    let window = Window::start(ctx);
    let thread_frame = frame.clone();
    let written = tokio::task::spawn_blocking(move || write_loop(writers, &thread_frame, f))
        .await
        .context("the writer thread failed")??;
    let deadline = Instant::now() + f.drain;
    while received.load(Ordering::Relaxed) < written.bytes_total && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let end = window.end(ctx);
    let got = received.load(Ordering::Relaxed);
    let lost = written.bytes_total.saturating_sub(got) / frame.len() as u64;
    for r in readers {
        r.abort();
    }
    let window_s = written.window.as_secs_f64();
    let per_write = (written.writes > 0).then(|| written.cpu_s * 1e6 / written.writes as f64);
    if let Some(us) = per_write {
        say(ctx, format!("floor: {us:.2} µs of writer CPU per write"));
    }
    let mut params = ctx.params();
    params.insert("sockets".into(), json!(f.sockets));
    params.insert("channels".into(), json!(f.channels));
    params.insert("rate".into(), json!(f.rate));
    params.insert("duration_s".into(), json!(f.duration.as_secs_f64()));
    params.insert("frame_bytes".into(), json!(frame.len()));
    params.insert("writer_cpu".into(), json!(f.writer_cpu));
    params.insert("writes".into(), json!(written.writes));
    let mut notes = notes;
    notes.push(
        "broker = the floor's writer thread (no broker runs): cpu per delivery is writer CPU per \
         write of a pre-encoded frame; divide fanout's figure by it for the ratio to the floor"
            .to_owned(),
    );
    Ok(Report {
        scenario: "floor".to_owned(),
        params,
        lost,
        sockets_failed: 0,
        connect: None,
        delivery: None,
        http: None,
        broker: Some(BrokerStats {
            pid: std::process::id(),
            clk_tck: procfs::clk_tck(),
            cpu_s: written.cpu_s,
            window_s,
            cpu_cores: if window_s > 0.0 {
                written.cpu_s / window_s
            } else {
                0.0
            },
            cpu_us_per_delivery: per_write,
            ..BrokerStats::default()
        }),
        bench: ctx.bench_stats(&end),
        sweep: Vec::new(),
        notes,
    })
}

/// Reads `socket` until it closes, adding what it read to `received`.
async fn drain_socket(mut socket: TcpStream, received: Arc<AtomicU64>) {
    let mut buf = vec![0u8; READ_BUFFER];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            break;
        }
        received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The writer thread: pins itself if asked, then writes `frame` to every socket of channel
/// `k % channels` for trigger `k`, on an open-loop schedule of `rate` triggers per second, and
/// measures its own CPU over the triggers after the warm-up.
fn write_loop(mut sockets: Vec<StdTcpStream>, frame: &[u8], f: Floor) -> Result<Written> {
    if let Some(cpu) = f.writer_cpu {
        pin_this_thread(cpu)?;
    }
    let interval = Duration::from_secs_f64(1.0 / f.rate);
    let warm_triggers = (f.warmup.as_secs_f64() * f.rate).round() as u64;
    let measured_triggers = ((f.duration.as_secs_f64() * f.rate).round() as u64).max(1);
    let start = Instant::now();
    let mut bytes_total = 0u64;
    let mut writes = 0u64;
    let mut measured_from: Option<(Instant, u64)> = None;
    for k in 0..warm_triggers + measured_triggers {
        if k == warm_triggers {
            measured_from = Some((Instant::now(), thread_cpu_ticks()?));
        }
        let due = start + interval.mul_f64(k as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let channel = (k % f.channels as u64) as usize;
        for socket in sockets.iter_mut().skip(channel).step_by(f.channels) {
            socket.write_all(frame).context("writing a frame")?;
            bytes_total += frame.len() as u64;
            if k >= warm_triggers {
                writes += 1;
            }
        }
    }
    let (from, ticks_from) = measured_from.expect("at least one measured trigger");
    let ticks = thread_cpu_ticks()?.saturating_sub(ticks_from);
    Ok(Written {
        writes,
        bytes_total,
        cpu_s: ticks as f64 / procfs::clk_tck() as f64,
        window: from.elapsed(),
    })
}

/// User plus system CPU time of the calling thread so far, in clock ticks.
fn thread_cpu_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .context("reading /proc/thread-self/stat")?;
    // `comm` may hold spaces and parentheses: the fields that follow start after its last `)`;
    // utime and stime are the 12th and 13th of them (fields 14 and 15 of proc(5)).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (field(11), field(12)) {
        (Some(utime), Some(stime)) => Ok(utime + stime),
        _ => bail!("no utime/stime in /proc/thread-self/stat"),
    }
}

/// Pins the calling thread to `cpu` with `taskset -p` on its thread id.
fn pin_this_thread(cpu: usize) -> Result<()> {
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .context("no thread id in /proc/thread-self")?
        .to_owned();
    let status = std::process::Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset")?;
    if !status.success() {
        bail!("taskset -p -c {cpu} {tid} failed: {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frame_is_an_unmasked_text_frame_of_its_json() {
        let frame = event_frame("bench-3", 0);
        assert_eq!(frame[0], 0x81);
        let len = frame[1] as usize;
        assert!(len < 126, "a bench event fits the short length form");
        let v: serde_json::Value = serde_json::from_slice(&frame[2..]).unwrap();
        assert_eq!(frame.len(), 2 + len);
        assert_eq!(v["channel"], "bench-3");
        let long = event_frame("bench-3", 300);
        assert_eq!(long[1], 126);
        assert_eq!(
            u16::from_be_bytes([long[2], long[3]]) as usize,
            long.len() - 4
        );
    }

    #[test]
    fn thread_cpu_is_readable() {
        assert!(thread_cpu_ticks().is_ok());
    }
}
