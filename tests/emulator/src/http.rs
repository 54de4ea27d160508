//! A small HTTP/1.1 server side: reading requests (request line, headers,
//! `Content-Length` or chunked bodies, `Expect: 100-continue`) and writing
//! responses with `Content-Length`, keeping the connection alive unless the
//! client asks otherwise.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::percent_decode;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
/// A connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub raw_path: String,
    /// The raw query string (after `?`), possibly empty.
    pub raw_query: String,
    /// Decoded query pairs, in order; repeated keys repeat.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/1.0, or `Connection: close`.
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Decoded path segments (empty segments dropped).
    pub fn segments(&self) -> Vec<String> {
        self.raw_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect()
    }

    /// The decoded path.
    pub fn path(&self) -> String {
        percent_decode(&self.raw_path, false)
    }
}

/// Parses a query string into decoded pairs; `a&b=` gives `("a","")`, `("b","")`.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(p, true), String::new()),
        })
        .collect()
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Extra headers (Content-Length, Connection and Date are added on write).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut r = Response::new(status);
        r.headers.push(("Content-Type".into(), "application/json".into()));
        r.body = value.to_string().into_bytes();
        r
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        423 => "Locked",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Serialises the head (status line and headers) of `resp`.
pub fn head_bytes(resp: &Response, keep_alive: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n"
    } else {
        "Connection: close\r\n"
    });
    head.push_str("\r\n");
    head.into_bytes()
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection (cleanly, between requests).
    Closed,
    /// Shutdown requested or idle too long.
    Stop,
    /// A malformed request: answer 400 and close.
    Bad(String),
    /// Request too large: answer 413 and close.
    TooLarge,
    Io(io::Error),
}

/// A connection with its read buffer.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Reads more bytes into the buffer; `Ok(false)` at EOF.
    fn fill(&mut self, stop: &AtomicBool, started: Instant) -> Result<bool, ReadError> {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            if stop.load(Ordering::SeqCst) {
                return Err(ReadError::Stop);
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(true);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if started.elapsed() > IDLE_TIMEOUT {
                        return Err(ReadError::Stop);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Reads one request.
    pub fn read_request(&mut self, stop: &AtomicBool) -> Result<Request, ReadError> {
        let started = Instant::now();
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadError::TooLarge);
            }
            if !self.fill(stop, started)? {
                return if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                    Err(ReadError::Closed)
                } else {
                    Err(ReadError::Bad("connection closed in the request head".into()))
                };
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        // Tolerate leading blank lines between requests.
        let request_line = lines.by_ref().find(|l| !l.is_empty()).unwrap_or_default().to_string();
        let mut parts = request_line.split(' ');
        let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
            _ => return Err(ReadError::Bad(format!("bad request line {request_line:?}"))),
        };
        if !version.starts_with("HTTP/1.") {
            return Err(ReadError::Bad(format!("unsupported version {version:?}")));
        }
        let mut headers = Vec::new();
        for line in lines {
            match line.split_once(':') {
                Some((k, v)) => headers.push((k.trim().to_string(), v.trim().to_string())),
                None => return Err(ReadError::Bad(format!("bad header line {line:?}"))),
            }
        }
        let target = match target.find("://") {
            // Absolute form: keep the path.
            Some(i) => target[i + 3..].find('/').map_or("/", |j| &target[i + 3 + j..]),
            None => target,
        };
        let (raw_path, raw_query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.to_string(), String::new()),
        };
        let mut req = Request {
            method: method.to_ascii_uppercase(),
            query: parse_query(&raw_query),
            raw_path,
            raw_query,
            headers,
            body: Vec::new(),
            close: version == "HTTP/1.0",
        };
        match req.header("connection").map(str::to_ascii_lowercase) {
            Some(c) if c.contains("close") => req.close = true,
            Some(c) if c.contains("keep-alive") => req.close = false,
            _ => {}
        }
        if req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        if chunked {
            req.body = self.read_chunked(stop, started)?;
        } else if let Some(len) = req.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| ReadError::Bad(format!("bad Content-Length {len:?}")))?;
            if len > MAX_BODY {
                return Err(ReadError::TooLarge);
            }
            while self.buf.len() < len {
                if !self.fill(stop, started)? {
                    return Err(ReadError::Bad("connection closed in the body".into()));
                }
            }
            req.body = self.buf.drain(..len).collect();
        }
        Ok(req)
    }

    fn read_chunked(&mut self, stop: &AtomicBool, started: Instant) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = find(&self.buf, b"\r\n") {
                    break p;
                }
                if !self.fill(stop, started)? {
                    return Err(ReadError::Bad("connection closed in a chunk".into()));
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            self.buf.drain(..line_end + 2);
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ReadError::Bad(format!("bad chunk size {size_text:?}")))?;
            if body.len() + size > MAX_BODY {
                return Err(ReadError::TooLarge);
            }
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let end = loop {
                        if let Some(p) = find(&self.buf, b"\r\n") {
                            break p;
                        }
                        if !self.fill(stop, started)? {
                            return Ok(body);
                        }
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill(stop, started)? {
                    return Err(ReadError::Bad("connection closed in a chunk".into()));
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_repeats_and_decodes() {
        let q = parse_query("tags=a&tags=b%20c&name=x+y&flag&=v&e=");
        assert_eq!(
            q,
            vec![
                ("tags".into(), "a".into()),
                ("tags".into(), "b c".into()),
                ("name".into(), "x y".into()),
                ("flag".into(), "".into()),
                ("".into(), "v".into()),
                ("e".into(), "".into()),
            ]
        );
    }

    #[test]
    fn head_has_length_and_connection() {
        let r = Response::json(200, &serde_json::json!({"a":1}));
        let h = String::from_utf8(head_bytes(&r, false)).unwrap_or_default();
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(h.contains("Content-Length: 7\r\n"), "{h}");
        assert!(h.contains("Connection: close\r\n"), "{h}");
        assert!(h.ends_with("\r\n\r\n"), "{h}");
    }
}
