//! The load generators' HTTP/1.1 client: one keep-alive connection per request in
//! flight, each request written as one buffer and each response parsed in place.
//!
//! It does what `wrk` does and no more, so that the generator, which shares the
//! machine's cores with the engine and Postgres, spends as little of them as it can.
//! A general client (reqwest) cost as much CPU per request as the engine's whole ingest
//! path. It speaks only what the engine answers: a status line, headers and a body of
//! `content-length` bytes; anything else (a chunked body, a closed connection) is an
//! error that names it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How long one request may take before the run fails, so that a hung engine ends a
/// workload with an error instead of stalling it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One keep-alive connection that POSTs JSON to one path.
pub struct Connection {
    stream: TcpStream,
    /// Everything of a request up to the `content-length` value.
    head: String,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// A response's status and body, borrowed from the connection until its next request.
pub struct Response<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

impl Connection {
    pub async fn open(addr: SocketAddr, path: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            head: format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: "
            ),
            request: Vec::with_capacity(512),
            response: Vec::with_capacity(1024),
        })
    }

    /// POSTs `body` and reads the whole response.
    pub async fn post(&mut self, body: &[u8]) -> Result<Response<'_>> {
        let (status, head_len, end) = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(body))
            .await
            .with_context(|| format!("no response within {REQUEST_TIMEOUT:?}"))??;
        Ok(Response {
            status,
            body: &self.response[head_len..end],
        })
    }

    /// Sends the request and reads its response into `self.response`; returns the
    /// status, where the body starts and where it ends.
    async fn exchange(&mut self, body: &[u8]) -> Result<(u16, usize, usize)> {
        self.request.clear();
        self.request.extend_from_slice(self.head.as_bytes());
        write!(self.request, "{}\r\n\r\n", body.len()).expect("writing to a Vec");
        self.request.extend_from_slice(body);
        self.stream
            .write_all(&self.request)
            .await
            .context("sending the request")?;

        self.response.clear();
        let (status, head_len, body_len) = loop {
            if self.stream.read_buf(&mut self.response).await? == 0 {
                bail!("the server closed the connection before its response was complete");
            }
            if let Some(parsed) = parse_head(&self.response)? {
                break parsed;
            }
        };
        let end = head_len + body_len;
        while self.response.len() < end {
            if self.stream.read_buf(&mut self.response).await? == 0 {
                bail!("the server closed the connection in the middle of a response body");
            }
        }
        if self.response.len() > end {
            bail!("the server sent more than one response to one request");
        }
        Ok((status, head_len, end))
    }
}

/// `(status, head length, body length)` once `buf` holds a whole response head.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf).context("parsing the response head")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.context("a response without a status code")?;
    let mut body_len = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok();
            body_len = Some(
                value
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .with_context(|| format!("a bad content-length: {value:?}"))?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a response with transfer-encoding, which this client does not read");
        }
    }
    Ok(Some((status, head_len, body_len.unwrap_or(0))))
}

/// Idle connections to one address and path, for requests whose number in flight
/// varies: a request takes an idle connection or opens one, and gives it back after a
/// complete response.
pub struct Pool {
    addr: SocketAddr,
    path: String,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    pub fn new(addr: SocketAddr, path: &str) -> Self {
        Self {
            addr,
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// POSTs `body`; returns the response's status.
    pub async fn post(&self, body: &[u8]) -> Result<u16> {
        let idle = self.idle.lock().expect("pool lock").pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => Connection::open(self.addr, &self.path).await?,
        };
        let status = connection.post(body).await?.status;
        self.idle.lock().expect("pool lock").push(connection);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_parsed_once_complete() {
        let whole = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let head_len = whole.len() - 2;
        assert_eq!(parse_head(&whole[..head_len - 1]).unwrap(), None);
        assert_eq!(parse_head(whole).unwrap(), Some((202, head_len, 2)));
    }

    #[test]
    fn a_chunked_or_malformed_response_is_an_error() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(
            parse_head(chunked)
                .unwrap_err()
                .to_string()
                .contains("transfer-encoding")
        );
        let bad = b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n";
        assert!(
            parse_head(bad)
                .unwrap_err()
                .to_string()
                .contains("content-length")
        );
    }
}
