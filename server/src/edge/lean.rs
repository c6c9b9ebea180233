//! Lean event streams: a subscription opened on a fresh connection is served without hyper.
//!
//! An idle subscriber is mostly its connection, and a connection served by hyper keeps two
//! 8 KiB buffers for as long as it lives (the read buffer the request head came in, and the
//! write buffer for response heads), which no setting shrinks. A hub holds tens of thousands
//! of connections that read nothing after their first request and write only events, so a
//! new connection whose first request is a `GET` of an event stream (the hub, the counter
//! stream; sorted in [`super::head`]) is answered here by the same router, with every layer and
//! extractor, and its body written straight to the socket, close-delimited, with no buffer
//! beyond the event being written. Anything else, and every later request on a connection, is
//! hyper's.

use super::head::StreamHead;
use axum::{Router, body::Body, extract::ConnectInfo};
use bytes::Buf;
use futures_util::FutureExt;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use std::{io, net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower::ServiceExt;

/// Largest non-stream answer (an error) collected to send with its length.
const MAX_PLAIN_BODY: usize = 64 * 1024;

/// Answers `head` through the router, then writes the answer itself.
pub async fn serve(
    app: Router,
    mut tcp: TcpStream,
    peer: SocketAddr,
    head: StreamHead,
    write_timeout: Duration,
) {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(&head.path)
        .version(head.version);
    for (name, value) in &head.headers {
        request = request.header(name.as_str(), value.as_slice());
    }
    let Ok(mut request) = request.body(Body::empty()) else {
        let _ = tcp
            .write_all(&super::head::Refusal::Malformed.response())
            .await;
        return;
    };
    drop(head);
    request.extensions_mut().insert(ConnectInfo(peer));
    // Boxed: the router's future is large, and the task outlives it by hours; unboxed, its
    // size would stay part of every connection's task.
    let Ok(response) = Box::pin(app.oneshot(request)).await;
    let (parts, body) = response.into_parts();
    let streaming = parts.status == StatusCode::OK
        && parts.headers.get(header::CONTENT_TYPE)
            == Some(&HeaderValue::from_static("text/event-stream"));
    let (plain_body, body) = if streaming {
        (None, Some(body))
    } else {
        let collected = http_body_util::Limited::new(body, MAX_PLAIN_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (Some(collected), None)
    };
    let mut out = Vec::with_capacity(512);
    let status = parts.status;
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n");
    if let Some(plain) = &plain_body {
        out.extend_from_slice(format!("content-length: {}\r\n", plain.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if let Some(plain) = plain_body {
        out.extend_from_slice(&plain);
    }
    drop(parts);
    if write(&mut tcp, &out, write_timeout).await.is_err() {
        return;
    }
    drop(out);
    if let Some(body) = body {
        stream(&mut tcp, body, write_timeout).await;
    }
    let _ = tcp.shutdown().await;
}

async fn write(tcp: &mut TcpStream, bytes: &[u8], timeout: Duration) -> io::Result<()> {
    tokio::time::timeout(timeout, tcp.write_all(bytes))
        .await
        .map_err(|_| io::ErrorKind::TimedOut)?
}

/// Writes each chunk of the body as it comes (the hub hands over every queued event in one
/// chunk: one write per wakeup), until the body ends or the client leaves.
async fn stream(tcp: &mut TcpStream, mut body: Body, timeout: Duration) {
    let (mut reader, mut writer) = tcp.split();
    let mut scratch = [0u8; 64];
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            // The client closed; what it sends on a stream's connection is dropped.
            read = reader.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
        };
        let Some(Ok(frame)) = frame else { return };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        while data.has_remaining() {
            let written = tokio::time::timeout(timeout, writer.write(data.chunk()))
                .map(|r| r.unwrap_or(Err(io::ErrorKind::TimedOut.into())))
                .await;
            match written {
                Ok(0) | Err(_) => return,
                Ok(n) => data.advance(n),
            }
        }
    }
}
