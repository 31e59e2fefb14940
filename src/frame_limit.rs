//! The WebSocket's incoming bytes, watched before actix-ws sees them.
//!
//! actix-ws reads every chunk that is ready before it decodes, and actix-http checks a
//! frame's length against the limit only once the whole frame is buffered. A client that
//! declares a 2^40-byte frame and keeps sending could take the whole memory before either
//! looked. Here each frame header is read as it passes, so a frame over the limit ends the
//! stream at its header, and actix-ws is made to decode after every chunk, so no more than
//! one chunk sits in its buffer beyond what it has decoded.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{web, FromRequest, HttpRequest};
use bytes::Bytes;
use futures_core::Stream;

use crate::error::AppError;

/// Wraps the upgrade's `body` for actix-ws: a frame declared over `max_bytes` ends it with
/// `PayloadError::Overflow`, which actix-ws hands on as an I/O error (see [`refused`]).
pub fn guard(
    req: &HttpRequest,
    body: web::Payload,
    max_bytes: usize,
) -> Result<web::Payload, AppError> {
    let watched: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Watched {
        inner: body,
        headers: HeaderReader::new(max_bytes as u64),
        refused: false,
        just_gave: false,
    });
    let mut payload = Payload::Stream { payload: watched };
    web::Payload::from_request(req, &mut payload)
        .into_inner()
        .map_err(|e| AppError::BadRequest(e.to_string()))
}

/// Whether an error of actix-ws's message stream is this guard refusing a frame.
pub fn refused(error: &std::io::Error) -> bool {
    (error.get_ref())
        .and_then(|inner| inner.downcast_ref::<PayloadError>())
        .is_some_and(|inner| matches!(inner, PayloadError::Overflow))
}

struct Watched {
    inner: web::Payload,
    headers: HeaderReader,
    /// A frame over the limit was announced: the stream has ended.
    refused: bool,
    just_gave: bool,
}

impl Stream for Watched {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.refused {
            return Poll::Ready(None);
        }
        if self.just_gave {
            // Pending ends actix-ws's read loop so it decodes; the wake brings it back.
            self.just_gave = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            if self.headers.feed(chunk).is_err() {
                // Nothing of this chunk is passed on: the frame is refused whole.
                self.refused = true;
                return Poll::Ready(Some(Err(PayloadError::Overflow)));
            }
            self.just_gave = true;
        }
        next
    }
}

/// Follows frame boundaries through the byte stream, reading only headers.
struct HeaderReader {
    max: u64,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
    /// The header read so far (at most 14 bytes).
    header: [u8; 14],
    have: usize,
}

/// A frame declared longer than the limit.
#[derive(Debug, PartialEq)]
struct TooBig;

impl HeaderReader {
    fn new(max: u64) -> Self {
        Self {
            max,
            skip: 0,
            header: [0; 14],
            have: 0,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<(), TooBig> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len() as u64);
                self.skip -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(payload) = self.complete_header() {
                if payload > self.max {
                    return Err(TooBig);
                }
                self.skip = payload;
                self.have = 0;
            }
        }
        Ok(())
    }

    /// The payload length once the header is complete.
    fn complete_header(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        let (extended, len) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        if self.have < 2 + extended + mask {
            return None;
        }
        Some(len.unwrap_or_else(|| {
            self.header[2..2 + extended]
                .iter()
                .fold(0, |n, &b| (n << 8) | u64::from(b))
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn masked(len_byte: u8, extended: &[u8]) -> Vec<u8> {
        let mut h = vec![0x81, 0x80 | len_byte];
        h.extend_from_slice(extended);
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn follows_frames_of_every_length_form_split_anywhere() {
        let mut stream = Vec::new();
        for len in [0u64, 5, 125, 126, 300, 65_535, 65_536, 100_000] {
            let mut frame = match len {
                0..=125 => masked(len as u8, &[]),
                126..=65_535 => masked(126, &(len as u16).to_be_bytes()),
                _ => masked(127, &len.to_be_bytes()),
            };
            frame.extend(std::iter::repeat_n(b'x', len as usize));
            stream.extend(frame);
        }
        // A frame over the limit at the end.
        stream.extend(masked(127, &(200_001u64).to_be_bytes()));
        for chunk in [1, 7, 13, 4096, stream.len()] {
            let mut reader = HeaderReader::new(200_000);
            let results: Vec<_> = stream.chunks(chunk).map(|c| reader.feed(c)).collect();
            assert_eq!(results.last(), Some(&Err(TooBig)), "chunks of {chunk}");
            assert!(results[..results.len() - 1].iter().all(Result::is_ok));
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_any_payload() {
        let mut reader = HeaderReader::new(65_536);
        let header = masked(127, &(1u64 << 40).to_be_bytes());
        assert_eq!(reader.feed(&header[..13]), Ok(()));
        assert_eq!(reader.feed(&header[13..]), Err(TooBig));
        // Unmasked frames (a client bug) are followed too.
        let mut reader = HeaderReader::new(10);
        assert_eq!(reader.feed(&[0x81, 11]), Err(TooBig));
    }
}
