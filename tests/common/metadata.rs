//! A stand-in for the ECS task metadata endpoint v4 on 127.0.0.1: plain HTTP/1.1 with
//! keep-alive, one thread per connection, answers chosen per request by the test.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::http::{read_message, write_filler};

/// What the server does with one request.
pub enum Reply {
    /// 200 with this JSON body.
    Json(String),
    /// This status with a short text body.
    Status(u16),
    /// Says nothing for this long, then closes the connection.
    Hang(Duration),
    /// 200 with only the first half of this JSON body (a complete HTTP answer).
    Truncated(String),
    /// 200 with a body of this many bytes, sent as it is read.
    Huge(usize),
    /// 200 with a chunked body that never ends.
    Endless,
}

type Handler = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// The server; it stops serving when the test process ends.
pub struct MetadataServer {
    /// `ECS_CONTAINER_METADATA_URI_V4` for the agent.
    pub uri: String,
    /// Requests seen per path.
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
}

impl MetadataServer {
    /// Serves `handler(path, n)` for the n-th request (from 0) of each path below the
    /// base URI (`/task`, `/task/stats`).
    pub fn start(handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!(
            "http://{}/v4/0123456789abcdef-1111111111",
            listener.local_addr().unwrap()
        );
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = Arc::clone(&counts);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (handler, counts) = (Arc::clone(&handler), Arc::clone(&shared));
                thread::spawn(move || serve(stream, &*handler, &counts));
            }
        });
        MetadataServer {
            uri,
            counts,
            connections,
        }
    }

    /// How many connections the agent opened.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// How many requests `path` (e.g. `/task`) has had.
    pub fn requests(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn serve(stream: TcpStream, handler: &Handler, counts: &Mutex<HashMap<String, usize>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let Some(request) = read_message(&mut reader) else {
            return;
        };
        let target = request.target();
        let path = target
            .find("/task")
            .map_or(target, |i| &target[i..])
            .to_owned();
        let n = {
            let mut counts = counts.lock().unwrap();
            let count = counts.entry(path.clone()).or_insert(0);
            *count += 1;
            *count - 1
        };
        let response = match handler(&path, n) {
            Reply::Json(body) => head(200, "application/json", body.len()) + &body,
            Reply::Status(code) => head(code, "text/plain", 5) + "error",
            Reply::Hang(how_long) => {
                thread::sleep(how_long);
                return;
            }
            Reply::Truncated(body) => {
                let half = &body[..body.len() / 2];
                head(200, "application/json", half.len()) + half
            }
            Reply::Huge(bytes) => {
                let head = head(200, "application/json", bytes);
                if stream.write_all(head.as_bytes()).is_err()
                    || !write_filler(&mut stream, bytes, b' ')
                {
                    return;
                }
                continue;
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 << 10, " ".repeat(64 << 10));
                while stream.write_all(chunk.as_bytes()).is_ok() {}
                return;
            }
        };
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn head(status: u16, content_type: &str, length: usize) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    )
}
