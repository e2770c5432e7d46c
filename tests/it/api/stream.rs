//! `GET /v1/events`: every event, in order, to every client; a reconnect
//! resumes with `Last-Event-ID`, or hears how many it lost.

use super::*;

/// One SSE frame: its id, its event type, its data parsed.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: Option<u64>,
    pub kind: Option<String>,
    pub data: Value,
}

/// An open stream, read as it comes.
pub struct Reader {
    stream: tokio::net::TcpStream,
    buffer: String,
}

/// Connects to `/v1/events` (with `Last-Event-ID`); returns the reader and
/// the response head, once the first comment line is in.
pub async fn open(addr: SocketAddr, last_event_id: Option<u64>) -> (Reader, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("GET /v1/events HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = Reader {
        stream,
        buffer: String::new(),
    };
    let head = reader.read_until("\r\n\r\n").await;
    reader.read_until(": flowwatch events\n\n").await;
    (reader, head)
}

impl Reader {
    async fn read_until(&mut self, end: &str) -> String {
        loop {
            // Chunked transfer: the chunk sizes sit between frames; frames
            // are found by their own blank line, so they do not matter.
            if let Some(at) = self.buffer.find(end) {
                let taken: String = self.buffer.drain(..at + end.len()).collect();
                return taken;
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(SOON, self.stream.read(&mut chunk))
                .await
                .expect("the stream went quiet")
                .expect("read");
            assert!(n > 0, "the stream closed; so far: {}", self.buffer);
            self.buffer.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The next frame that carries data (comments and chunk sizes skipped).
    pub async fn next(&mut self) -> Frame {
        loop {
            let block = self.read_until("\n\n").await;
            let mut frame = Frame {
                id: None,
                kind: None,
                data: Value::Null,
            };
            for line in block.lines() {
                if let Some(id) = line.strip_prefix("id: ") {
                    frame.id = id.trim().parse().ok();
                } else if let Some(kind) = line.strip_prefix("event: ") {
                    frame.kind = Some(kind.trim().to_string());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    frame.data = serde_json::from_str(data).expect("data is JSON");
                }
            }
            if !frame.data.is_null() {
                return frame;
            }
        }
    }

    /// Frames until one satisfies `last` (included).
    pub async fn until(&mut self, last: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let done = last(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
}

fn succeeded(frame: &Frame) -> bool {
    frame.data["event"] == "execution.transition" && frame.data["to"] == "Succeeded"
}

#[tokio::test]
async fn every_event_reaches_two_clients_in_order_and_a_reconnect_resumes() {
    let sim = support::simulator(&execution("run-s", Some(("2s", "Succeeded")))).await;
    let setup = Setup::new(&sim, "", ""); // kept: it owns the config folder
    let daemon = setup.start().await;
    let (mut one, head) = open(daemon.addr, None).await;
    assert!(
        head.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let (mut two, _) = open(daemon.addr, None).await;
    assert_eq!(daemon.add("run-s").await.status, 201);

    let seen_one = one.until(succeeded).await;
    let seen_two = two.until(succeeded).await;
    let names = |frames: &[Frame]| -> Vec<String> {
        frames
            .iter()
            .filter(|f| f.data["execution"] == "run-s")
            .map(|f| f.data["event"].as_str().unwrap().to_string())
            .collect()
    };
    // `Running` is first seen unless start-up took longer than 2 s.
    let names = names(&seen_one);
    assert_eq!(
        names.first().map(String::as_str),
        Some("watch.added"),
        "{names:?}"
    );
    assert!(
        names.len() >= 2 && names[1..].iter().all(|n| n == "execution.transition"),
        "{names:?}"
    );
    let ids: Vec<u64> = seen_one
        .iter()
        .map(|f| f.id.expect("every event has an id"))
        .collect();
    // Every event, none skipped: consecutive ids.
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids: {ids:?}");
    let ids_two: Vec<Option<u64>> = seen_two.iter().map(|f| f.id).collect();
    assert_eq!(ids_two, ids.iter().map(|id| Some(*id)).collect::<Vec<_>>());
    let data = |frames: &[Frame]| frames.iter().map(|f| f.data.clone()).collect::<Vec<_>>();
    assert_eq!(data(&seen_one), data(&seen_two));

    // The same JSON as stdout, field for field.
    // The stream gets each line just before stdout does: wait for stdout.
    let stdout = daemon
        .child
        .wait_for("the end on stdout", SOON, |e| {
            let ends = e.named("execution.transition");
            ends.iter().any(|t| t["to"] == "Succeeded")
        })
        .await;
    let printed = stdout.one("execution.transition", |e| e["to"] == "Succeeded");
    assert_eq!(&seen_one.last().unwrap().data, printed);

    // Reconnecting after the first event: the rest again, nothing lost.
    let (mut again, _) = open(daemon.addr, Some(ids[0])).await;
    let replayed = again.until(succeeded).await;
    assert_eq!(
        replayed.iter().map(|f| f.id).collect::<Vec<_>>(),
        ids_two[1..].to_vec()
    );
    assert!(replayed.iter().all(|f| f.kind.is_none()));
    daemon.stop().await;
}

#[tokio::test]
async fn a_reconnect_past_the_ring_hears_how_many_it_lost() {
    let sim = support::simulator(&format!(
        "{}{}",
        execution("run-1", Some(("300ms", "Succeeded"))),
        execution("run-2", Some(("300ms", "Succeeded")))
    ))
    .await;
    let setup = Setup::new(&sim, "events_buffer = 2", ""); // kept: it owns the config folder
    let daemon = setup.start().await;
    let (mut watcher, _) = open(daemon.addr, None).await;
    assert_eq!(daemon.add("run-1").await.status, 201);
    let first = watcher.next().await.id.unwrap();
    assert_eq!(daemon.add("run-2").await.status, 201);
    // Until both have ended: at least four events (each added and ended),
    // more than the ring holds.
    let mut ended = 0;
    let mut last = first;
    while ended < 2 {
        let frame = watcher.next().await;
        last = frame.id.unwrap();
        if succeeded(&frame) {
            ended += 1;
        }
    }
    assert!(last - first >= 3, "ids {first}..={last}");
    let (mut late, _) = open(daemon.addr, Some(first)).await;
    let gap = late.next().await;
    assert_eq!(gap.kind.as_deref(), Some("gap"), "{gap:?}");
    // The ring holds the newest two: events emitted since `last` (the
    // daemon does not stop talking) push it on, so at least these were lost.
    let lost = gap.data["lost"].as_u64().expect("lost is a count");
    assert!(lost >= last - 2 - first, "{gap:?}");
    let kept: Vec<u64> = vec![late.next().await.id.unwrap(), late.next().await.id.unwrap()];
    assert_eq!(
        kept,
        [first + 1 + lost, first + 2 + lost],
        "the replay starts right after the loss"
    );
    daemon.stop().await;
}
