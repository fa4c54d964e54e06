//! A fault-injecting TCP proxy on 127.0.0.1 between the agent and the test server. It
//! passes traffic through, or refuses connections, resets them, holds them open without
//! answering, answers HTTP 5xx, or answers CloudWatch's throttling error in the protocol
//! the SDK speaks (HTTP 400, `x-amzn-query-error: Throttling;Sender`, CBOR `__type`).
//! Starting a fault also cuts the connections already open, or the SDK's pooled
//! keep-alive connection would dodge the outage.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::http::{Message, read_message, write_filler};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass traffic through.
    None,
    /// Connection refused: nothing listens.
    Refuse,
    /// Accept, then reset the connection.
    Reset,
    /// Accept and read, never answer.
    Hang,
    /// Answer every request with this HTTP status.
    Status(u16),
    /// Answer every request with CloudWatch's throttling error.
    Throttle,
    /// Answer every request with `AccessDenied` (HTTP 403), as for a role without the
    /// permission.
    Deny,
    /// Answer requests whose body contains these bytes with `InvalidParameterValue`;
    /// pass the others through.
    RejectContaining(&'static str),
    /// Answer with this status, content type and body: what a proxy or a wrong endpoint
    /// says, not CloudWatch.
    Answer(u16, &'static str, &'static str),
    /// Answer HTTP 500 with a body of this many bytes, sent as it is read.
    Huge(usize),
    /// Answer HTTP 400 with the request's own headers as the body, credentials first, as
    /// some error pages do: the signature and the session token come back.
    Echo,
}

struct Shared {
    fault: Mutex<Fault>,
    /// Open connections, cut when a fault starts.
    open: Mutex<Vec<TcpStream>>,
    /// Requests answered with an error status or throttling.
    answered_with_fault: AtomicUsize,
    /// Connections refused, reset or held.
    connections_faulted: AtomicUsize,
    /// When bytes last went through, in ms since `started`.
    last_traffic_ms: AtomicU64,
    started: Instant,
}

impl Shared {
    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_traffic_ms.store(ms, Ordering::SeqCst);
    }

    fn quiet_for(&self) -> Duration {
        let last = self.last_traffic_ms.load(Ordering::SeqCst);
        Duration::from_millis((self.started.elapsed().as_millis() as u64).saturating_sub(last))
    }
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://127.0.0.1:PORT`), passing traffic.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            fault: Mutex::new(Fault::None),
            open: Mutex::new(Vec::new()),
            answered_with_fault: AtomicUsize::new(0),
            connections_faulted: AtomicUsize::new(0),
            last_traffic_ms: AtomicU64::new(0),
            started: Instant::now(),
        });
        let accept_shared = Arc::clone(&shared);
        thread::spawn(move || accept_loop(Some(listener), addr, upstream, &accept_shared));
        FaultProxy { addr, shared }
    }

    /// `AWS_ENDPOINT_URL` for the agent.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches behaviour; any fault also cuts the connections already open. The cut
    /// waits (at most 2 s) for a quiet moment between requests: cutting a request whose
    /// answer is on its way makes the agent resend it, an at-least-once duplicate that
    /// would blur what the outage tests check.
    pub fn set(&self, fault: Fault) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while fault != Fault::None
            && self.shared.quiet_for() < Duration::from_millis(150)
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(10));
        }
        *self.shared.fault.lock().unwrap() = fault;
        if fault != Fault::None {
            for stream in self.shared.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Requests answered with an error status or a throttling error so far.
    pub fn faulted_requests(&self) -> usize {
        self.shared.answered_with_fault.load(Ordering::SeqCst)
    }

    /// Connections reset or held so far.
    pub fn faulted_connections(&self) -> usize {
        self.shared.connections_faulted.load(Ordering::SeqCst)
    }
}

fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: &Arc<Shared>,
) {
    loop {
        let fault = *shared.fault.lock().unwrap();
        if fault == Fault::Refuse {
            // Closing the socket makes connects fail with ECONNREFUSED.
            listener = None;
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            listener = TcpListener::bind(addr).ok();
            if let Some(l) = &listener {
                l.set_nonblocking(true).unwrap();
            }
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                let shared = Arc::clone(shared);
                thread::spawn(move || handle(stream, upstream, &shared));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn handle(stream: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) {
    let fault = *shared.fault.lock().unwrap();
    match fault {
        Fault::None => pipe(stream, upstream, shared),
        Fault::Refuse | Fault::Reset => {
            shared.connections_faulted.fetch_add(1, Ordering::SeqCst);
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        Fault::Hang => {
            shared.connections_faulted.fetch_add(1, Ordering::SeqCst);
            shared
                .open
                .lock()
                .unwrap()
                .push(stream.try_clone().unwrap());
            let mut sink = [0u8; 4096];
            let mut stream = stream;
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
        Fault::Status(_)
        | Fault::Throttle
        | Fault::Deny
        | Fault::RejectContaining(_)
        | Fault::Answer(..)
        | Fault::Huge(_)
        | Fault::Echo => {
            answer_with_faults(stream, upstream, shared);
        }
    }
}

fn pipe(client: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    {
        let mut open = shared.open.lock().unwrap();
        open.push(client.try_clone().unwrap());
        open.push(server.try_clone().unwrap());
    }
    let (c_read, s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upstream_shared = Arc::clone(shared);
    let forward = thread::spawn(move || {
        copy(c_read, &s_write, &upstream_shared);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    copy(server, &client, shared);
    let _ = client.shutdown(Shutdown::Both);
    let _ = forward.join();
}

/// Copies until EOF or an error, noting when traffic passes.
fn copy(mut from: TcpStream, mut to: &TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                shared.touch();
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                shared.touch();
            }
        }
    }
}

/// Reads HTTP requests on a keep-alive connection and answers each with the current
/// fault, until the fault changes or the client leaves.
fn answer_with_faults(stream: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) {
    shared
        .open
        .lock()
        .unwrap()
        .push(stream.try_clone().unwrap());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let Some(request) = read_message(&mut reader) else {
            return;
        };
        let response = match *shared.fault.lock().unwrap() {
            Fault::Throttle => throttling_response(),
            Fault::Deny => error_response(403, "AccessDenied", "User is not authorized"),
            Fault::RejectContaining(needle) => {
                if !contains(&request.body, needle.as_bytes()) {
                    let Some(answer) = forward(upstream, &request) else {
                        return;
                    };
                    if stream.write_all(&answer).is_err() {
                        return;
                    }
                    continue;
                }
                invalid_parameter_response()
            }
            Fault::Status(code) => plain_response(code, "text/plain", b"service unavailable"),
            Fault::Answer(code, content_type, body) => {
                plain_response(code, content_type, body.as_bytes())
            }
            Fault::Echo => {
                // "You sent:" and the headers, the credentials first, as some pages do.
                let mut lines: Vec<&str> = request.head.lines().skip(1).collect();
                lines.sort_by_key(|l| {
                    let l = l.to_ascii_lowercase();
                    !(l.starts_with("authorization") || l.starts_with("x-amz-security-token"))
                });
                let body = format!("You sent:\n{}", lines.join("\n"));
                plain_response(400, "text/plain", body.as_bytes())
            }
            Fault::Huge(bytes) => {
                shared.answered_with_fault.fetch_add(1, Ordering::SeqCst);
                let head = format!(
                    "HTTP/1.1 500 Error\r\nContent-Type: text/plain\r\nContent-Length: {bytes}\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).is_err()
                    || !write_filler(&mut stream, bytes, b'x')
                {
                    return;
                }
                continue;
            }
            _ => return,
        };
        shared.answered_with_fault.fetch_add(1, Ordering::SeqCst);
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

/// An answer with a body of `content_type`.
fn plain_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status} Error\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// Sends one request upstream on a fresh connection and returns the whole answer.
fn forward(upstream: SocketAddr, request: &Message) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).ok()?;
    server.write_all(request.head.as_bytes()).ok()?;
    server.write_all(&request.body).ok()?;
    let answer = read_message(&mut BufReader::new(server))?;
    Some([answer.head.into_bytes(), answer.body].concat())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A CBOR text string: major type 3 with the length in the low bits (under 24 bytes).
fn cbor_text(out: &mut Vec<u8>, text: &str) {
    out.push(0x60 | text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// HTTP 400 `InvalidParameterValue`, as CloudWatch answers a datum it will not take.
fn invalid_parameter_response() -> Vec<u8> {
    error_response(400, "InvalidParameterValue", "bad datum")
}

/// A CloudWatch error in Smithy RPC v2 CBOR: `{"__type": code, "message": message}`.
fn error_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    let mut body = vec![0xa2];
    for text in ["__type", code, "message", message] {
        cbor_text(&mut body, text);
    }
    let mut response = format!(
        "HTTP/1.1 {status} Error\r\nsmithy-protocol: rpc-v2-cbor\r\nContent-Type: application/cbor\r\n\
         x-amzn-query-error: {code};Sender\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// HTTP 400 with a Smithy RPC v2 CBOR error body `{"__type": "Throttling", "message":
/// "Rate exceeded"}`, encoded by hand (text strings: major type 3, length in the low bits).
fn throttling_response() -> Vec<u8> {
    let mut body = vec![0xa2];
    for text in ["__type", "Throttling", "message", "Rate exceeded"] {
        cbor_text(&mut body, text);
    }
    let mut response = format!(
        "HTTP/1.1 400 Bad Request\r\nsmithy-protocol: rpc-v2-cbor\r\nContent-Type: application/cbor\r\n\
         x-amzn-query-error: Throttling;Sender\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}
