//! An answer written out from bytes that already exist (the room's cached entries), piece
//! by piece, with its length known up front: no per-request copy of what it is made of.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;

pub(super) struct Pieces<I> {
    pieces: I,
    len: u64,
}

impl<I: Iterator<Item = Bytes> + Unpin> Pieces<I> {
    /// `pieces` must add up to `len` bytes.
    pub(super) fn new(len: usize, pieces: I) -> Self {
        Self {
            pieces,
            len: len as u64,
        }
    }
}

impl<I: Iterator<Item = Bytes> + Unpin> MessageBody for Pieces<I> {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        Poll::Ready(self.pieces.next().map(Ok))
    }
}
