//! The little of HTTP/1.1 that the stand-in servers and the proxy need: one message at a
//! time, its body by `Content-Length`.

use std::io::BufRead;

/// One request or response.
pub struct Message {
    /// Start line and headers, with the final empty line.
    pub head: String,
    pub body: Vec<u8>,
}

impl Message {
    /// `GET`, `PUT`… of a request.
    pub fn method(&self) -> &str {
        self.head.split_whitespace().next().unwrap_or("")
    }

    /// The request target (path and query).
    pub fn target(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or("/")
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Reads the next message; `None` when the peer closed the connection.
pub fn read_message(reader: &mut impl BufRead) -> Option<Message> {
    let mut head = String::new();
    loop {
        let before = head.len();
        if reader.read_line(&mut head).ok()? == 0 {
            return None;
        }
        if head[before..] == *"\r\n" || head[before..] == *"\n" {
            break;
        }
    }
    let mut message = Message {
        head,
        body: Vec::new(),
    };
    let length = message
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    message.body = vec![0u8; length];
    reader.read_exact(&mut message.body).ok()?;
    Some(message)
}

/// Writes `bytes` bytes of `fill`, 64 KiB at a time, for bodies too large to hold; false
/// once the peer stops reading and the connection breaks.
pub fn write_filler(stream: &mut impl std::io::Write, bytes: usize, fill: u8) -> bool {
    let chunk = vec![fill; 64 << 10];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if stream.write_all(&chunk[..n]).is_err() {
            return false;
        }
        left -= n;
    }
    true
}
